import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { kubectl as runKubectl, type KubectlResult } from '../helpers/kubectl.js';

/**
 * Writing with kubectl v1.32 as a user does: apply/create/replace with
 * kubectl's default validation (which reads /openapi/v3 to leave it to the
 * server), explain and diff (OpenAPI and server dry run), `--dry-run=server`
 * on every verb storing nothing, and JSON patch on built-in and KubeVirt kinds.
 */
// Each case runs several kubectl processes (and boots VMs): minutes on a loaded machine.
describe('kubectl writes against the sim', { timeout: 120_000 }, () => {
  let sim: SimHandle;
  let dir: string;
  const kubectl = (args: string[], stdin?: string): Promise<KubectlResult> =>
    runKubectl(sim.kubeconfigPath, args, { cacheDir: join(dir, 'kube-cache'), stdin });
  const ok = async (args: string[], stdin?: string): Promise<string> => {
    const r = await kubectl(args, stdin);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  };
  const file = (name: string, body: unknown): string => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(body));
    return path;
  };
  const vm = (name: string, extra: Record<string, unknown> = {}) => ({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'w' },
    spec: {
      runStrategy: 'Halted',
      template: {
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
      ...extra,
    },
  });
  const resourceVersion = () => String(sim.store.resourceVersion);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-kubectl-write-'));
    sim = await startSim({ dir, speed: 200, guests: false });
    await ok(['create', 'namespace', 'w']);
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('apply, create and replace -f work with default validation, and strict validation refuses unknown fields', async () => {
    expect(await ok(['apply', '-f', file('vm.json', vm('a'))])).toBe(
      'virtualmachine.kubevirt.io/a created\n',
    );
    expect(
      await ok([
        'create',
        '-f',
        file('cm.json', {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'c', namespace: 'w' },
          data: { k: 'v' },
        }),
      ]),
    ).toBe('configmap/c created\n');
    expect(
      await ok([
        'replace',
        '-f',
        file('cm2.json', {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'c', namespace: 'w' },
          data: { k: 'v2' },
        }),
      ]),
    ).toBe('configmap/c replaced\n');
    expect(await ok(['get', 'cm', 'c', '-n', 'w', '-o', 'jsonpath={.data.k}'])).toBe('v2');
    expect(await ok(['apply', '-f', file('vm-b.json', vm('a', { runStrategy: 'Manual' }))])).toBe(
      'virtualmachine.kubevirt.io/a configured\n',
    );

    // Unknown fields: the default (Strict for kubectl) is the server's refusal.
    const typo = await kubectl([
      'apply',
      '-f',
      file('typo.json', vm('typo', { runStrategyy: 'Always' })),
    ]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('unknown field "spec.runStrategyy"');
    const warned = await kubectl(['apply', '--validate=warn', '-f', join(dir, 'typo.json')]);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain('unknown field "spec.runStrategyy"');
  });

  it('explain reads the schemas the sim validates with, built-in and KubeVirt', async () => {
    const vmField = await ok(['explain', 'vm.spec.runStrategy']);
    expect(vmField).toContain('KIND:       VirtualMachine');
    expect(vmField).toContain('FIELD: runStrategy <string>');
    expect(vmField).toContain('RerunOnFailure');
    const pods = await ok(['explain', 'pods.spec.containers']);
    expect(pods).toContain('FIELD: containers <[]Container>');
    expect(pods).toMatch(/^\s+image\s+<string>$/m);
  });

  it('diff shows what apply would change, and changes nothing', async () => {
    const before = resourceVersion();
    const same = await kubectl(['diff', '-f', join(dir, 'vm-b.json')]);
    expect(same.code).toBe(0);
    expect(same.stdout).toBe('');
    const changed = await kubectl([
      'diff',
      '-f',
      file('vm-c.json', vm('a', { runStrategy: 'Always' })),
    ]);
    expect(changed.stderr).toBe('');
    expect(changed.code).toBe(1);
    expect(changed.stdout).toMatch(/^-\s+runStrategy: Manual$/m);
    expect(changed.stdout).toMatch(/^\+\s+runStrategy: Always$/m);
    expect(resourceVersion()).toBe(before);
    expect(await ok(['get', 'vm', 'a', '-n', 'w', '-o', 'jsonpath={.spec.runStrategy}'])).toBe(
      'Manual',
    );
  });

  it('--dry-run=server answers like the write and stores nothing, for every verb', async () => {
    const before = resourceVersion();
    const ns = await ok(['create', 'namespace', 'ghost', '--dry-run=server', '-o', 'json']);
    expect(JSON.parse(ns)).toMatchObject({
      metadata: { name: 'ghost', labels: { 'kubernetes.io/metadata.name': 'ghost' } },
      spec: { finalizers: ['kubernetes'] },
      status: { phase: 'Active' },
    });
    expect((await kubectl(['get', 'ns', 'ghost'])).stderr).toContain(
      'namespaces "ghost" not found',
    );

    expect(await ok(['apply', '--dry-run=server', '-f', file('vm-d.json', vm('dry'))])).toBe(
      'virtualmachine.kubevirt.io/dry created (server dry run)\n',
    );
    expect(
      await ok([
        'patch',
        'cm',
        'c',
        '-n',
        'w',
        '--dry-run=server',
        '-p',
        '{"data":{"k":"patched"}}',
      ]),
    ).toBe('configmap/c patched\n');
    await ok([
      'replace',
      '--dry-run=server',
      '-f',
      file('cm3.json', {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'c', namespace: 'w' },
        data: { k: 'replaced' },
      }),
    ]);
    expect(await ok(['delete', 'vm', 'a', '-n', 'w', '--dry-run=server'])).toBe(
      'virtualmachine.kubevirt.io "a" deleted (server dry run)\n',
    );
    expect(await ok(['delete', 'ns', 'w', '--dry-run=server'])).toBe(
      'namespace "w" deleted (server dry run)\n',
    );

    expect(resourceVersion()).toBe(before);
    expect((await kubectl(['get', 'vm', 'dry', '-n', 'w'])).code).toBe(1);
    expect(await ok(['get', 'cm', 'c', '-n', 'w', '-o', 'jsonpath={.data.k}'])).toBe('v2');
    expect(await ok(['get', 'vm', 'a', '-n', 'w', '-o', 'name'])).toBe(
      'virtualmachine.kubevirt.io/a\n',
    );
    expect(await ok(['get', 'ns', 'w', '-o', 'jsonpath={.status.phase}'])).toBe('Active');
  });

  it('a dry run is validated and admitted like the real write, and counts nothing against quota', async () => {
    const invalid = await kubectl([
      'apply',
      '--dry-run=server',
      '-f',
      file('bad.json', vm('Bad_Name')),
    ]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('The VirtualMachine "Bad_Name" is invalid: metadata.name');

    await ok(['create', 'quota', 'cms', '--hard=configmaps=3', '-n', 'w']);
    const used = async () => {
      for (let i = 0; i < 100; i++) {
        const u = await ok([
          'get',
          'quota',
          'cms',
          '-n',
          'w',
          '-o',
          'jsonpath={.status.used.configmaps}',
        ]);
        if (u) return u;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('quota status never computed');
    };
    expect(await used()).toBe('2'); // kube-root-ca.crt and c
    await ok(['create', 'configmap', 'dry-one', '-n', 'w', '--dry-run=server']);
    await ok(['create', 'configmap', 'real-one', '-n', 'w']);
    const refused = await kubectl([
      'create',
      'configmap',
      'dry-two',
      '-n',
      'w',
      '--dry-run=server',
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('exceeded quota: cms');
    // A dry-run NodePort reserves no port: the real create gets the same one.
    const port = (out: string) =>
      (JSON.parse(out) as { spec: { ports: { nodePort: number }[] } }).spec.ports[0]!.nodePort;
    await ok(['delete', 'quota', 'cms', '-n', 'w']);
    const dry = await ok([
      'create',
      'service',
      'nodeport',
      'np',
      '--tcp=80:80',
      '-n',
      'w',
      '--dry-run=server',
      '-o',
      'json',
    ]);
    const real = await ok([
      'create',
      'service',
      'nodeport',
      'np',
      '--tcp=80:80',
      '-n',
      'w',
      '-o',
      'json',
    ]);
    expect(port(real)).toBe(port(dry));
  });

  it('JSON patch works on built-in kinds and on custom resources, and a failed test op is 422', async () => {
    await ok([
      'patch',
      'cm',
      'c',
      '-n',
      'w',
      '--type=json',
      '-p',
      '[{"op":"add","path":"/data/extra","value":"x"},{"op":"remove","path":"/data/k"}]',
    ]);
    expect(await ok(['get', 'cm', 'c', '-n', 'w', '-o', 'jsonpath={.data}'])).toBe('{"extra":"x"}');
    await ok([
      'patch',
      'vm',
      'a',
      '-n',
      'w',
      '--type=json',
      '-p',
      '[{"op":"replace","path":"/spec/runStrategy","value":"Halted"}]',
    ]);
    expect(await ok(['get', 'vm', 'a', '-n', 'w', '-o', 'jsonpath={.spec.runStrategy}'])).toBe(
      'Halted',
    );
    const failed = await kubectl([
      'patch',
      'cm',
      'c',
      '-n',
      'w',
      '--type=json',
      '-p',
      '[{"op":"test","path":"/data/extra","value":"y"}]',
    ]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('test failed');
    const invalid = await kubectl([
      'patch',
      'vm',
      'a',
      '-n',
      'w',
      '--type=json',
      '-p',
      '[{"op":"replace","path":"/spec/runStrategy","value":5}]',
    ]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain(
      'The VirtualMachine "a" is invalid: spec.runStrategy: Invalid type',
    );
  });

  it('keeps metadata.generation where a real server does: custom resources, not a ConfigMap', async () => {
    const generation = (...args: string[]) =>
      ok(['get', ...args, '-n', 'w', '-o', 'jsonpath={.metadata.generation}']);
    await ok(['create', 'configmap', 'no-generation', '-n', 'w', '--from-literal=a=1']);
    await ok(['label', 'configmap', 'no-generation', '-n', 'w', 'x=y']);
    expect(await generation('configmap', 'no-generation')).toBe('');
    await ok(['apply', '-f', file('gen.json', vm('gen'))]);
    expect(await generation('vm', 'gen')).toBe('1');
    await ok(['label', 'vm', 'gen', '-n', 'w', 'x=y']); // metadata only: no new generation
    expect(await generation('vm', 'gen')).toBe('1');
    await ok([
      'patch',
      'vm',
      'gen',
      '-n',
      'w',
      '--type=merge',
      '-p',
      '{"spec":{"template":{"metadata":{"labels":{"tier":"db"}}}}}',
    ]);
    expect(await generation('vm', 'gen')).toBe('2');
  }, 120_000); // nine kubectl runs: slow on a loaded machine
});
