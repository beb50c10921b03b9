import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HostCluster,
  envNamespace,
  generateEnvSecrets,
  loadKubeConfig,
  renderEnvironment,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { configWith } from './helpers.js';

/**
 * A provision that died after creating everything (a crash, a lost job lock)
 * is run again from the start. Its env's ResourceQuota is full by then, and
 * the API server's quota admission answers before it finds a name taken.
 */
describe('creating an env a second time', () => {
  let dir: string;
  let sim: SimHandle;
  let cluster: HostCluster;
  const config = configWith();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-create-repeat-'));
    sim = await startSim({ dir: join(dir, 'sim'), speed: 1000, guests: false });
    cluster = new HostCluster(loadKubeConfig({ kubeconfig: sim.kubeconfigPath }), {
      logger: silentLogger(),
      quotaRetryMs: 50,
    });
  });

  afterAll(async () => {
    await cluster?.close();
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A 3-VM env created whole, as a first provision leaves it. */
  const createEnv = async (envId: string) => {
    const objects = renderEnvironment({
      config,
      flavor: 'v1.30-3node',
      envId,
      secrets: await generateEnvSecrets(),
    });
    await cluster.createAll(objects);
    return { objects, namespace: envNamespace(config, envId) };
  };

  it('takes the quota refusal of an object already there as done, and keeps the first one', async () => {
    const { objects, namespace } = await createEnv('again001');
    // The quota's status is computed a moment after it is created; from then
    // on the VMs it counts fill it.
    const vmQuotaFull = async () => {
      const quota = await cluster.core.readNamespacedResourceQuota({
        name: 'env-quota',
        namespace,
      });
      const key = 'count/virtualmachines.kubevirt.io';
      return (
        quota.status?.hard?.[key] !== undefined &&
        quota.status.used?.[key] === quota.status.hard[key]
      );
    };
    await expect
      .poll(vmQuotaFull, { timeout: 30_000, interval: 25, message: 'the quota counts the VMs' })
      .toBe(true);
    const uid = async () =>
      (
        (await cluster.custom.getNamespacedCustomObject({
          group: 'kubevirt.io',
          version: 'v1',
          namespace,
          plural: 'virtualmachines',
          name: 'worker-1',
        })) as { metadata: { uid: string } }
      ).metadata.uid;
    const before = await uid();

    // What the API server says to a plain repeat: the quota, not the name.
    const vm = objects.find((o) => o.kind === 'VirtualMachine')!;
    await expect(
      cluster.custom.createNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace,
        plural: 'virtualmachines',
        body: vm,
      }),
    ).rejects.toMatchObject({ code: 403 });

    await expect(cluster.createAll(objects)).resolves.toBeUndefined();
    expect(await uid()).toBe(before);
  });

  it('still fails, naming the object and the quota, for a new object over the quota', async () => {
    const { objects, namespace } = await createEnv('again002');
    const extra = structuredClone(objects.find((o) => o.kind === 'VirtualMachine')!);
    extra.metadata = { ...extra.metadata, name: 'worker-9', namespace };
    // createAll itself waits out a quota whose status is not computed yet.
    await expect(cluster.createAll([extra])).rejects.toThrow(
      /^creating VirtualMachine lab-again002\/worker-9: .*exceeded quota: env-quota/,
    );
  });
});
