import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostCluster, LABELS, MANAGED_BY, loadKubeConfig } from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { HostMirrors } from '../../src/sync/host.js';
import { mirrorName } from '../../src/sync/names.js';
import type { PlannedMirror } from '../../src/sync/plan.js';
import { configWith } from '../kube/helpers.js';

/**
 * Every replica runs the sync and converges on the same host objects. With
 * the env's quota of node ports full, the API server's quota admission
 * refuses a create before it finds the name taken: a replica that creates a
 * mirror another one made a moment ago gets 403 "exceeded quota", not 409.
 */
describe("a mirror another replica made while the env's node-port quota is full", () => {
  let dir: string;
  let sim: SimHandle;
  let cluster: HostCluster;
  const namespace = 'lab-quota001';
  const env = { envId: 'quota001', namespace };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-sync-quota-'));
    sim = await startSim({ dir: join(dir, 'sim'), speed: 1000, guests: false });
    cluster = new HostCluster(loadKubeConfig({ kubeconfig: sim.kubeconfigPath }), {
      logger: silentLogger(),
      quotaRetryMs: 50,
    });
    const labels = { [LABELS.env]: env.envId, [LABELS.managedBy]: MANAGED_BY };
    await cluster.createAll([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels } },
      {
        apiVersion: 'v1',
        kind: 'ResourceQuota',
        metadata: { name: 'env-quota', namespace, labels },
        spec: { hard: { 'services.nodeports': '1' } },
      },
    ]);
    // Counting starts once the quota controller has computed its status.
    const deadline = Date.now() + 30_000;
    const hasStatus = async () =>
      (await cluster.core.readNamespacedResourceQuota({ name: 'env-quota', namespace })).status
        ?.hard !== undefined;
    while (!(await hasStatus())) {
      if (Date.now() > deadline) throw new Error('the quota got no status in 30 s');
      await new Promise((r) => setTimeout(r, 25));
    }
  });

  afterAll(async () => {
    await cluster?.close();
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The mirror the sync plans for the student's `default/<service>:<port>` on their node port. */
  const planned = (service: string, port: number, nodePort: number): PlannedMirror => ({
    namespace: 'default',
    service,
    port,
    protocol: 'TCP',
    nodePort,
    name: mirrorName('default', service, port, 'TCP'),
  });

  it('is taken as published by the replica that came second, not reported refused', async () => {
    const mirror = planned('web', 80, 30080);
    const config = configWith();
    const first = new HostMirrors(cluster, config);
    const second = new HostMirrors(cluster, config);
    const empty = { services: [], policy: undefined };

    const a = await first.apply(env, [mirror], empty);
    expect(a.refused).toEqual([]);
    // The second replica read the host before the first one's create.
    const b = await second.apply(env, [mirror], empty);
    expect(b.refused).toEqual([]);
    expect(b.state.services.map((s) => s.metadata?.uid)).toEqual(
      a.state.services.map((s) => s.metadata?.uid),
    );
    // Its policy opens the mirrored port, as the first one's does.
    expect(b.state.policy?.spec?.ingress?.[0]?.ports).toEqual([{ protocol: 'TCP', port: 30080 }]);
    expect((await first.list(namespace)).length).toBe(1);
  });

  it('still refuses, and says why, a second port over the quota', async () => {
    const mirrors = new HostMirrors(cluster, configWith());
    const state = { services: await mirrors.list(namespace), policy: undefined };
    expect(state.services.map((s) => s.metadata?.name)).toEqual([
      mirrorName('default', 'web', 80, 'TCP'),
    ]);
    const [web, extra] = [planned('web', 80, 30080), planned('api', 8080, 30081)];
    const { refused } = await mirrors.apply(env, [web, extra], state);
    expect(refused).toEqual([
      {
        service: 'default/api',
        port: 8080,
        protocol: 'TCP',
        reason: "the lab's quota of published ports is used up",
      },
    ]);
  });
});
