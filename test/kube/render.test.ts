/* eslint-disable @typescript-eslint/no-explicit-any -- rendered YAML is inspected field by field */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { validateObject } from '../../src/kube/index.js';
import { ORCHESTRATOR_KEY, SCHEMAS_PRESENT } from './helpers.js';
import { cliEnv } from '../helpers/cli-env.js';

const ROOT = join(import.meta.dirname, '..', '..');

function render(args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'labvirt.js'), 'render', ...args], {
    env: cliEnv(),
    encoding: 'utf8',
  });
  return {
    code: r.status,
    stderr: r.stderr,
    stdout: r.stdout,
    objects: parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any>),
  };
}

// Each case spawns the CLI a few times: seconds each (more through tsx), far more
// on a loaded 2-core machine, so the default 30 s per test is too tight.
describe('labvirt render', { timeout: 180_000 }, () => {
  it('prints a whole 3-node env in creation order: Namespace first, ResourceQuota last', () => {
    const { code, objects, stdout } = render(['--flavor', 'v1.30-3node', '--env', 'demo']);
    expect(code).toBe(0);
    // Isolation rests on the host's CNI: the output says so before the policies.
    expect(
      stdout.startsWith(
        '# labvirt: the NetworkPolicies below isolate this env only where the host',
      ),
    ).toBe(true);
    expect(stdout).toContain('`labvirt doctor` checks it.');
    expect(objects[0]).toMatchObject({ kind: 'Namespace', metadata: { name: 'lab-demo' } });
    expect(objects.at(-1)?.kind).toBe('ResourceQuota');
    const vms = objects.filter((o) => o.kind === 'VirtualMachine');
    expect(vms.map((v) => v.metadata.name)).toEqual(['control-plane', 'worker-1', 'worker-2']);
    for (const vm of vms) {
      expect(vm.spec.runStrategy).toBe('Always');
      expect(vm.spec.running).toBeUndefined();
      const tpl = vm.spec.template;
      expect(tpl.metadata.labels).toMatchObject({
        'labvirt.io/env': 'demo',
        'labvirt.io/node': vm.metadata.name,
      });
      expect(tpl.spec.domain.devices.interfaces).toEqual([{ name: 'default', bridge: {} }]);
      expect(tpl.spec.networks).toEqual([{ name: 'default', pod: {} }]);
      expect(tpl.spec.volumes.find((v: any) => v.cloudInitNoCloud).cloudInitNoCloud).toEqual({
        secretRef: { name: 'cloudinit' },
      });
    }
    const cp = vms[0]!.spec.template.spec.domain;
    expect(cp).toMatchObject({ cpu: { cores: 2 }, memory: { guest: '2Gi' } });
    expect(vms[1]!.spec.template.spec.domain).toMatchObject({
      cpu: { cores: 1 },
      memory: { guest: '1Gi' },
    });
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy').map((p) => p.metadata.name);
    // The fewest policies that say it: each is one API write per env.
    expect(policies).toEqual(['default-deny', 'env-traffic']);
    // Gateway mode: the nodes' names (the control plane's endpoint among them), no NodePort.
    expect(
      objects.filter((o) => o.kind === 'Service').map((s) => s.spec.type ?? 'ClusterIP'),
    ).toEqual(['ClusterIP']);
  });

  it.skipIf(!SCHEMAS_PRESENT)('prints YAML whose every object passes strict validation', () => {
    // Namespace, 2 NetworkPolicies, LimitRange, the env's cloud-init Secret, a
    // VM per node, the nodes Service, ResourceQuota; nodeport mode adds a
    // policy and a Service.
    for (const [args, count] of [
      [['--flavor', 'v1.30-3node', '--env', 'demo'], 10],
      [['--flavor', 'v1.31-1node', '--env', 'demo', '--ssh-mode', 'nodeport'], 10],
    ] as const) {
      const { code, stderr, objects } = render([...args]);
      // The project has no image lock (making one needs the registries): the
      // operator is told that images go by tag and how to lock them.
      expect(stderr).toMatch(
        /^labvirt: warning: no image lock at \S+\/vm-templates\/images\/images\.lock\.yaml: .* pinned by tag only .* run `labvirt images lock` and commit \S+\n$/,
      );
      expect(code).toBe(0);
      expect(objects.length).toBe(count);
      for (const o of objects) expect(validateObject(o)).toEqual([]);
    }
  });

  it('uses the public key given with --public-key, and refuses a file that is not one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-render-'));
    try {
      const keyFile = join(dir, 'id.pub');
      writeFileSync(keyFile, `${ORCHESTRATOR_KEY}\n`);
      const { code, objects } = render(['--flavor', 'v1.31-1node', '--public-key', keyFile]);
      expect(code).toBe(0);
      const secret = objects.find((o) => o.metadata.name === 'cloudinit')!;
      expect(Buffer.from(secret.data.userdata, 'base64').toString()).toContain(ORCHESTRATOR_KEY);
      writeFileSync(keyFile, 'hello\n');
      const bad = render(['--flavor', 'v1.31-1node', '--public-key', keyFile]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/one OpenSSH public key line/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('explains itself with --help and refuses a bad --ssh-mode or --env', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'labvirt.js'), 'render', '--help'], {
      env: cliEnv(),
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--flavor <flavor>/);
    expect(r.stdout).toMatch(/--ssh-mode <mode>/);
    expect(render(['--flavor', 'v1.31-1node', '--ssh-mode', 'telnet']).stderr).toMatch(
      /--ssh-mode must be gateway or nodeport/,
    );
    expect(render(['--flavor', 'v1.31-1node', '--env', 'Bad;rm']).stderr).toMatch(
      /--env must be 1-20 lowercase letters or digits/,
    );
  });

  it('adds the SSH NodePort Service in nodeport mode and opens port 22 on the control plane only', () => {
    const { code, objects } = render([
      '--flavor',
      'v1.31-1node',
      '--env',
      'np',
      '--ssh-mode',
      'nodeport',
    ]);
    expect(code).toBe(0);
    const svc = objects.find((o) => o.kind === 'Service' && o.spec.type === 'NodePort');
    expect(svc?.spec).toMatchObject({
      type: 'NodePort',
      selector: { 'labvirt.io/node': 'control-plane' },
    });
    const ssh = objects.find(
      (o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'allow-ssh-nodeport',
    );
    expect(ssh?.spec.podSelector.matchLabels['labvirt.io/node']).toBe('control-plane');
    expect(ssh?.spec.ingress).toEqual([{ ports: [{ protocol: 'TCP', port: 22 }] }]);
  });

  it('refuses an unknown flavor with the list of configured ones', () => {
    const { code, stderr } = render(['--flavor', 'v1.99-3node']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/unknown flavor v1.99-3node; configured: v1.30-3node, v1.31-1node/);
  });
});
