import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { kubectl as runKubectl, type KubectlResult } from '../helpers/kubectl.js';

/**
 * What a new user types first, with kubectl v1.32 itself against the sim:
 * short names, categories, discovery's verbs, and the columns a real API
 * server prints (server-side Tables) for built-in kinds and KubeVirt's.
 */
// Each case runs several kubectl processes (and boots VMs): minutes on a loaded machine.
describe('kubectl get against the sim', { timeout: 120_000 }, () => {
  let sim: SimHandle;
  let dir: string;
  const kubectl = (...args: string[]): Promise<KubectlResult> =>
    runKubectl(sim.kubeconfigPath, args, { cacheDir: join(dir, 'kube-cache') });
  const ok = async (...args: string[]): Promise<string> => {
    const r = await kubectl(...args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  };
  /** Column headers of a kubectl table, split where kubectl pads them. */
  const headers = (out: string): string[] =>
    out
      .split('\n')[0]!
      .trim()
      .split(/\s{2,}/);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-kubectl-get-'));
    sim = await startSim({ dir, speed: 200, guests: false });
    await ok('create', 'namespace', 'demo');
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const vmManifest = (name: string) =>
    JSON.stringify({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name, namespace: 'demo' },
      spec: {
        runStrategy: 'Always',
        template: {
          metadata: { labels: { app: name } },
          spec: {
            domain: { devices: {}, memory: { guest: '128Mi' } },
            volumes: [
              {
                name: 'root',
                containerDisk: { image: 'quay.io/kubevirt/cirros-container-disk-demo' },
              },
            ],
          },
        },
      },
    });

  const runningVm = async (name: string) => {
    const r = await runKubectl(sim.kubeconfigPath, ['apply', '-f', '-'], {
      stdin: vmManifest(name),
      cacheDir: join(dir, 'kube-cache'),
    });
    expect(r.stderr).toBe('');
    for (let i = 0; i < 200; i++) {
      const phase = await ok('get', 'vmi', name, '-n', 'demo', '-o', 'jsonpath={.status.phase}');
      if (phase === 'Running') return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`VMI ${name} never ran`);
  };

  it('knows the short names: get ns, get vm,vmi -A', async () => {
    const ns = await ok('get', 'ns');
    expect(headers(ns)).toEqual(['NAME', 'STATUS', 'AGE']);
    expect(ns).toMatch(/^demo\s+Active\s+\d+s$/m);
    expect(ns).toMatch(/^kube-system\s+Active/m);

    await runningVm('web');
    const both = await ok('get', 'vm,vmi', '-A');
    expect(both).toMatch(/^demo\s+virtualmachine\.kubevirt\.io\/web\s+\d+s\s+Running\s+True$/m);
    expect(both).toMatch(
      /^demo\s+virtualmachineinstance\.kubevirt\.io\/web\s+\d+s\s+Running\s+10\.244\.\d+\.\d+\s+sim-node-\d\s+True$/m,
    );
    expect(await ok('get', 'vms', '-n', 'demo', '-o', 'name')).toBe(
      'virtualmachine.kubevirt.io/web\n',
    );
  });

  it('get all lists what the `all` category holds: pods, services, VMs and VMIs', async () => {
    await runningVm('db');
    await ok('create', 'service', 'clusterip', 'db', '--tcp=5432:5432', '-n', 'demo');
    await ok('create', 'configmap', 'not-in-all', '-n', 'demo');
    const all = await ok('get', 'all', '-n', 'demo');
    expect(all).toMatch(/^pod\/virt-launcher-db-\w+\s/m);
    expect(all).toMatch(/^service\/db\s+ClusterIP\s+10\.96\.\d+\.\d+\s+<none>\s+5432\/TCP\s/m);
    expect(all).toMatch(/^virtualmachine\.kubevirt\.io\/db\s/m);
    expect(all).toMatch(/^virtualmachineinstance\.kubevirt\.io\/db\s/m);
    expect(all).not.toContain('not-in-all');
  });

  it('discovery advertises the real verbs: namespaces have no deletecollection', async () => {
    const resources = await ok('api-resources', '-o', 'wide');
    const row = (name: string) => resources.split('\n').find((l) => l.startsWith(`${name} `)) ?? '';
    expect(row('namespaces')).toMatch(/\screate,delete,get,list,patch,update,watch\s/);
    expect(row('configmaps')).toMatch(
      /^configmaps\s+cm\s.*\screate,delete,deletecollection,get,list,patch,update,watch\s/,
    );
    expect(row('virtualmachines')).toMatch(
      /vm,vms\s+kubevirt\.io\/v1\s+true\s+VirtualMachine\s.*\ball\b/,
    );
    expect(row('pods')).toMatch(/po\s+v1\s+true\s+Pod\s.*\ball\b/);
  });

  it('prints the real columns for pods, with -o wide, --show-kind and --no-headers', async () => {
    const pods = await ok('get', 'pods', '-n', 'demo');
    expect(headers(pods)).toEqual(['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']);
    const wide = await ok('get', 'pods', '-n', 'demo', '-o', 'wide');
    expect(headers(wide)).toEqual([
      'NAME',
      'READY',
      'STATUS',
      'RESTARTS',
      'AGE',
      'IP',
      'NODE',
      'NOMINATED NODE',
      'READINESS GATES',
    ]);
    const bare = await ok('get', 'pods', '-n', 'demo', '--no-headers', '--show-kind');
    expect(bare).not.toContain('READY');
    expect(
      bare
        .trim()
        .split('\n')
        .every((l) => l.startsWith('pod/virt-launcher-')),
    ).toBe(true);
  });

  it("prints KubeVirt's printer columns for VMs and VMIs, wide ones with -o wide", async () => {
    expect(headers(await ok('get', 'vm', '-n', 'demo'))).toEqual([
      'NAME',
      'AGE',
      'STATUS',
      'READY',
    ]);
    expect(headers(await ok('get', 'vmi', '-n', 'demo'))).toEqual([
      'NAME',
      'AGE',
      'PHASE',
      'IP',
      'NODENAME',
      'READY',
    ]);
    expect(headers(await ok('get', 'vmi', '-n', 'demo', '-o', 'wide'))).toEqual([
      'NAME',
      'AGE',
      'PHASE',
      'IP',
      'NODENAME',
      'READY',
      'LIVE-MIGRATABLE',
      'PAUSED',
    ]);
  });

  it("serves KubeVirt's install resource as virt-operator's CRD does: kv, the `all` category, PHASE", async () => {
    const kv = await ok('get', 'kv', '-n', 'kubevirt');
    expect(headers(kv)).toEqual(['NAME', 'AGE', 'PHASE']);
    expect(kv).toMatch(/^kubevirt\s+\d+[sm]\s+Deployed$/m);
    expect(await ok('get', 'kvs', '-A', '-o', 'name')).toBe('kubevirt.kubevirt.io/kubevirt\n');
    expect(await ok('get', 'all', '-n', 'kubevirt')).toMatch(
      /^kubevirt\.kubevirt\.io\/kubevirt\s+\d+[sm]\s+Deployed$/m,
    );
  });

  it('prints the real columns for the other built-in kinds', async () => {
    expect(headers(await ok('get', 'nodes'))).toEqual([
      'NAME',
      'STATUS',
      'ROLES',
      'AGE',
      'VERSION',
    ]);
    expect(headers(await ok('get', 'svc', '-n', 'demo'))).toEqual([
      'NAME',
      'TYPE',
      'CLUSTER-IP',
      'EXTERNAL-IP',
      'PORT(S)',
      'AGE',
    ]);
    expect(await ok('get', 'cm', '-n', 'demo')).toMatch(
      /^NAME\s+DATA\s+AGE\nkube-root-ca\.crt\s+1\s+\d+s\n/,
    );
    await ok('create', 'quota', 'q', '--hard=pods=10,limits.cpu=4', '-n', 'demo');
    expect(headers(await ok('get', 'quota', '-n', 'demo'))).toEqual([
      'NAME',
      'AGE',
      'REQUEST',
      'LIMIT',
    ]);
    await ok('create', 'role', 'reader', '--verb=get', '--resource=pods', '-n', 'demo');
    await ok('create', 'rolebinding', 'r', '--role=reader', '--user=alice', '-n', 'demo');
    expect(headers(await ok('get', 'rolebinding', '-n', 'demo', '-o', 'wide'))).toEqual([
      'NAME',
      'ROLE',
      'AGE',
      'USERS',
      'GROUPS',
      'SERVICEACCOUNTS',
    ]);
  });

  it('watches with tables: get -w prints rows as objects change', async () => {
    const watching = runKubectl(
      sim.kubeconfigPath,
      ['get', 'cm', '-n', 'demo', '-w', '--request-timeout=3s'],
      { cacheDir: join(dir, 'kube-cache'), timeoutMs: 8000 },
    );
    await new Promise((r) => setTimeout(r, 1500));
    await ok('create', 'configmap', 'seen-by-watch', '-n', 'demo', '--from-literal=a=b');
    const { stdout } = await watching;
    expect(stdout).toMatch(/^seen-by-watch\s+1\s+\d+s$/m);
  });
});
