import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HostCluster,
  NamespaceEventRecorder,
  envNamespace,
  loadKubeConfig,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { kubectl } from '../helpers/kubectl.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

describe("Events on an env's Namespace", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 2 },
        },
      },
    });
  }, 60_000);
  afterAll(async () => stack?.stop());

  // `kubectl describe namespace` prints no Events (kubectl's NamespaceDescriber
  // lists quotas and limits only): `kubectl get events -n lab-…` is where they show.
  it('kubectl get events -n lab-… tells what the labels do not: warm (and how long it took), the session', async () => {
    await stack.fillPool('v1.30-1node', 1);
    const s = await stack.labvirt.service.start({ student: 'dora', labId: 'fixture-one' });
    await stack.untilSession(s.id, 'active');
    const active = await stack.labvirt.service.status(s.id);
    const ns = envNamespace(stack.labvirt.context.config, active.envId!);
    const events = async () =>
      (await kubectl(stack.sim.kubeconfigPath, ['get', 'events', '-n', ns])).stdout;
    const out = await stack.until(
      async () => ((await events()).includes('SessionStarted') ? events() : undefined),
      'the session event',
    );
    for (const reason of ['Warm', 'SessionStarted']) {
      expect(out, reason).toMatch(new RegExp(`Normal\\s+${reason}\\s+namespace/${ns}\\s`));
    }
    // Routine steps are on the Namespace's state label: no Event (each is an API write).
    for (const reason of ['Provisioning', 'Booting', 'Claimed', 'Preparing', 'Active']) {
      expect(out, reason).not.toMatch(new RegExp(`\\s${reason}\\s+namespace/`));
    }
    const labels = await stack.labvirt.context.cluster.getNamespace(ns);
    expect(labels?.metadata?.labels?.['labvirt.io/state']).toBe('active');
    expect(out).toMatch(/booting → warm after \d+\.\d s/);
    expect(out).toContain(`session ${s.id} of student dora, lab fixture-one`);
    await stack.labvirt.service.stop(s.id);
  }, 90_000);
});

describe('NamespaceEventRecorder', () => {
  let sim: SimHandle;
  let dir: string;
  let cluster: HostCluster;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-events-'));
    sim = await startSim({ dir, speed: 200, guests: false });
    cluster = new HostCluster(loadKubeConfig({ kubeconfig: sim.kubeconfigPath }), {
      logger: silentLogger(),
    });
    await cluster.createAll([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'lab-flapping' } },
    ]);
  }, 60_000);
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const listed = async () =>
    (await cluster.core.listNamespacedEvent({ namespace: 'lab-flapping' })).items;

  it('writes a burst, then one per interval, and drops the rest', async () => {
    let now = 1_000_000;
    const recorder = new NamespaceEventRecorder(cluster, {
      logger: silentLogger(),
      burst: 3,
      refillMs: 10_000,
      now: () => now,
    });
    const record = (i: number) =>
      recorder.record({
        namespace: 'lab-flapping',
        type: 'Warning',
        reason: 'ProvisionFailed',
        message: `attempt ${i}`,
      });
    const first = [];
    for (let i = 1; i <= 8; i++) first.push(await record(i));
    expect(first).toEqual([true, true, true, false, false, false, false, false]);
    now += 10_000;
    expect(await record(9)).toBe(true);
    expect(await record(10)).toBe(false);
    const events = await listed();
    expect(events.map((e) => e.message).sort()).toEqual([
      'attempt 1',
      'attempt 2',
      'attempt 3',
      'attempt 9',
    ]);
    expect(events[0]).toMatchObject({
      type: 'Warning',
      reason: 'ProvisionFailed',
      involvedObject: { kind: 'Namespace', name: 'lab-flapping' },
      source: { component: 'labvirt' },
    });
  });

  it('never throws when the Namespace is gone', async () => {
    const recorder = new NamespaceEventRecorder(cluster, { logger: silentLogger() });
    await expect(
      recorder.record({ namespace: 'lab-gone', type: 'Normal', reason: 'Warm', message: 'x' }),
    ).resolves.toBe(false);
  });
});
