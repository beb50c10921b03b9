import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ENV_PKI_SECRET,
  HostCluster,
  envNamespace,
  envSecretsData,
  generateEnvSecrets,
  loadKubeConfig,
  readEnvSecrets,
  renderEnvironment,
  type EnvSecrets,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { configWith } from './helpers.js';

/** Where an env keeps its PKI, read back through the API server as labvirt reads it. */
describe("an env's PKI in its control plane's cloud-init Secret", () => {
  let dir: string;
  let sim: SimHandle;
  let cluster: HostCluster;
  const config = configWith();
  let secrets: EnvSecrets;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-pki-'));
    sim = await startSim({ dir: join(dir, 'sim'), speed: 1000, guests: false });
    cluster = new HostCluster(loadKubeConfig({ kubeconfig: sim.kubeconfigPath }), {
      logger: silentLogger(),
      quotaRetryMs: 50,
    });
    secrets = await generateEnvSecrets();
  });

  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is rendered beside the user data, in no Secret of its own, and read back whole', async () => {
    const objects = renderEnvironment({
      config,
      flavor: 'v1.30-3node',
      envId: 'pkione01',
      secrets,
    });
    // One Secret for three VMs: the PKI added none.
    expect(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata?.name)).toEqual([
      'cloudinit',
    ]);
    await cluster.createAll(objects);
    const namespace = envNamespace(config, 'pkione01');
    const stored = await cluster.readSecret(namespace, ENV_PKI_SECRET);
    expect(Object.keys(stored!.data!)).toEqual(expect.arrayContaining(['userdata', 'ca.key']));
    const read = await readEnvSecrets(cluster, namespace);
    expect(read?.ca).toEqual(secrets.ca);
    expect(read?.bootstrapToken).toBe(secrets.bootstrapToken);
    expect(read?.sshKey).toEqual(secrets.sshKey);
    expect(read?.hostKeys).toEqual(secrets.hostKeys);
    expect(read?.studentKey).toEqual(secrets.studentKey);
  });

  it('is still read from the control plane’s Secret of an env made with one Secret per node', async () => {
    // The layout of 2026-12-05 to 2026-12-07: the PKI beside the control plane's own user data.
    const namespace = envNamespace(config, 'pkiold02');
    await cluster.core.createNamespace({ body: { metadata: { name: namespace } } });
    await cluster.core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: 'control-plane-cloudinit' },
        data: {
          userdata: Buffer.from('#cloud-config\n').toString('base64'),
          ...envSecretsData(secrets),
        },
      },
    });
    const read = await readEnvSecrets(cluster, namespace);
    expect(read?.sshKey).toEqual(secrets.sshKey);
    expect(read?.hostKeys['worker-1']).toEqual(secrets.hostKeys['worker-1']);
  });

  it('is still read from the Secret of its own of an env made by an older labvirt', async () => {
    // The oldest layout: the PKI in `cluster-pki`, the control plane's Secret with its user data only.
    const namespace = envNamespace(config, 'pkiold01');
    await cluster.core.createNamespace({ body: { metadata: { name: namespace } } });
    await cluster.core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'cluster-pki' }, data: envSecretsData(secrets) },
    });
    await cluster.core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: 'control-plane-cloudinit' },
        data: { userdata: Buffer.from('#cloud-config\n').toString('base64') },
      },
    });
    const read = await readEnvSecrets(cluster, namespace);
    expect(read?.sshKey).toEqual(secrets.sshKey);
    expect(read?.hostKeys['worker-2']).toEqual(secrets.hostKeys['worker-2']);
  });

  it('is absent for a new env whose Secrets are not made yet', async () => {
    const namespace = envNamespace(config, 'pkinew01');
    await cluster.core.createNamespace({ body: { metadata: { name: namespace } } });
    expect(await readEnvSecrets(cluster, namespace)).toBeUndefined();
  });
});
