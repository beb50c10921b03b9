import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';

/** The host cluster's own nodes, as `kubectl get nodes` shows them. */
describe('simulated host cluster: nodes', () => {
  let sim: SimHandle;
  let dir: string;
  let core: CoreV1Api;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-nodes-'));
    sim = await startSim({ dir, speed: 200, nodes: 3, nodeCpu: 16, nodeMemory: 64 * 2 ** 30 });
    const kc = new KubeConfig();
    kc.loadFromFile(sim.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const ready = (n: { status?: { conditions?: { type: string; status: string }[] } }) =>
    n.status?.conditions?.find((c) => c.type === 'Ready')?.status;

  it('lists one Ready Node per simulated node, with its capacity', async () => {
    const nodes = (await core.listNode()).items;
    expect(nodes.map((n) => n.metadata?.name)).toEqual(['sim-node-1', 'sim-node-2', 'sim-node-3']);
    expect(nodes.map(ready)).toEqual(['True', 'True', 'True']);
    expect(nodes[0]!.status?.capacity).toMatchObject({ cpu: '16', memory: `${64 * 2 ** 20}Ki` });
  });

  it('shows a node that went away as NotReady (Unknown), as the node controller does', async () => {
    sim.faults.failNode('sim-node-2');
    const node = await core.readNode({ name: 'sim-node-2' });
    expect(ready(node)).toBe('Unknown');
    expect(ready(await core.readNode({ name: 'sim-node-1' }))).toBe('True');
  });
});

describe('simulated host cluster: configurable boot delays', () => {
  it('takes explicit timings over the speed factor (a slow image pull keeps the VMI Scheduled)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-timings-'));
    const sim = await startSim({ dir, speed: 1000, guests: false, timings: { bootMs: 60_000 } });
    try {
      const kc = new KubeConfig();
      kc.loadFromFile(sim.kubeconfigPath);
      const core = kc.makeApiClient(CoreV1Api);
      const custom = kc.makeApiClient(CustomObjectsApi);
      await core.createNamespace({ body: { metadata: { name: 'slow' } } });
      const api = { group: 'kubevirt.io', version: 'v1', namespace: 'slow' };
      await custom.createNamespacedCustomObject({
        ...api,
        plural: 'virtualmachines',
        body: {
          apiVersion: 'kubevirt.io/v1',
          kind: 'VirtualMachine',
          metadata: { name: 'vm' },
          spec: {
            runStrategy: 'Always',
            template: { spec: { domain: { devices: {}, memory: { guest: '64Mi' } } } },
          },
        },
      });
      const phase = async () =>
        (
          (await custom
            .getNamespacedCustomObject({ ...api, plural: 'virtualmachineinstances', name: 'vm' })
            .catch(() => ({}))) as { status?: { phase?: string } }
        ).status?.phase;
      // Scheduling still follows the speed factor (1 ms); the boot waits its full minute.
      for (let i = 0; i < 200 && (await phase()) !== 'Scheduled'; i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(await phase()).toBe('Scheduled');
      await new Promise((r) => setTimeout(r, 500));
      expect(await phase()).toBe('Scheduled');
    } finally {
      await sim.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('simulated host cluster: a guest that cannot start', () => {
  it('fails its VMI with the reason instead of crashing the process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-bootfail-'));
    const sim = await startSim({ dir, speed: 1000 });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      // Guests' sandboxes live under <dir>/guests: a file there makes every boot's mkdir fail.
      writeFileSync(join(dir, 'guests'), 'not a directory');
      const kc = new KubeConfig();
      kc.loadFromFile(sim.kubeconfigPath);
      const core = kc.makeApiClient(CoreV1Api);
      const custom = kc.makeApiClient(CustomObjectsApi);
      await core.createNamespace({ body: { metadata: { name: 'broken' } } });
      const api = { group: 'kubevirt.io', version: 'v1', namespace: 'broken' };
      await custom.createNamespacedCustomObject({
        ...api,
        plural: 'virtualmachines',
        body: {
          apiVersion: 'kubevirt.io/v1',
          kind: 'VirtualMachine',
          metadata: { name: 'vm' },
          spec: {
            runStrategy: 'Always',
            template: { spec: { domain: { devices: {}, memory: { guest: '64Mi' } } } },
          },
        },
      });
      type Status = { phase?: string; reason?: string; message?: string };
      const status = async () =>
        (
          (await custom
            .getNamespacedCustomObject({ ...api, plural: 'virtualmachineinstances', name: 'vm' })
            .catch(() => ({}))) as { status?: Status }
        ).status ?? {};
      let seen: Status = {};
      for (let i = 0; i < 500 && seen.phase !== 'Failed'; i++) {
        seen = await status();
        if (seen.phase !== 'Failed') await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen).toMatchObject({ phase: 'Failed', reason: 'GuestStartFailed' });
      expect(seen.message).toMatch(/guests/);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await sim.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
