// One cloud-init Secret for all of an env's VMs: its user data is a Jinja
// template that cloud-init renders on each VM for its own hostname. Checked
// here with Debian's cloud-init (the renderer a real guest runs) against each
// node's own user data, and against the simulator's rendering.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import {
  imageLockOf,
  renderEnvUserData,
  renderUserData,
  roleOf,
  type NodeName,
} from '../../src/kube/index.js';
import { renderUserDataTemplate } from '../../src/sim/guest/index.js';
import {
  byKind,
  configWith,
  envUserDataOf,
  renderWith,
  sharedSecrets,
  userDataOf,
} from './helpers.js';

/** Debian's cloud-init package; CI installs it (.ci/run). */
const CLOUD_INIT = spawnSync('cloud-init', ['--version']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'labvirt-env-user-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OVERRIDES = {
  vm: {
    registryMirrors: { 'docker.io': ['https://mirror.example.org'] },
    proxy: { https: 'http://proxy.example.org:3128' },
  },
};

/** What cloud-init makes of the user data on a VM whose NoCloud meta-data names `hostname`. */
function cloudInitRender(userData: string, hostname: string): string {
  if (!CLOUD_INIT) {
    throw new Error('cloud-init is missing: apt-get install cloud-init (.ci/run installs it)');
  }
  const file = join(dir, 'user-data');
  const instance = join(dir, `instance-data-${hostname}.json`);
  writeFileSync(file, userData);
  writeFileSync(
    instance,
    JSON.stringify({ v1: { local_hostname: hostname, cloud_name: 'nocloud' } }),
  );
  const r = spawnSync('cloud-init', ['devel', 'render', file, '-i', instance], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`cloud-init devel render failed: ${r.stderr}`);
  return r.stdout;
}

/** Each node's own user data, as one Secret per node held it before. */
async function ownUserData(node: NodeName): Promise<string> {
  const config = configWith(OVERRIDES);
  return renderUserData({
    config,
    flavor: config.flavors['v1.30-3node']!,
    namespace: 'lab-abcd1234',
    node,
    role: roleOf(node),
    secrets: await sharedSecrets(),
    imageLock: imageLockOf(config),
  });
}

// cloud-init (Python) starts in about a second, far more on a loaded 2-core machine.
describe('one user data for every node of an env', { timeout: 120_000 }, () => {
  it('is one Secret that every VM names', async () => {
    const objects = await renderWith('v1.30-3node', OVERRIDES);
    expect(byKind(objects, 'Secret').map((s) => s.metadata.name)).toEqual(['cloudinit']);
    for (const vm of byKind(objects, 'VirtualMachine')) {
      const volumes = vm.spec.template.spec.volumes as { cloudInitNoCloud?: unknown }[];
      const volume = volumes.find((v) => v.cloudInitNoCloud);
      expect(volume?.cloudInitNoCloud).toEqual({ secretRef: { name: 'cloudinit' } });
    }
  });

  it('renders, in cloud-init, to exactly each node’s own config, which passes `cloud-init schema`', async () => {
    const objects = await renderWith('v1.30-3node', OVERRIDES);
    const template = envUserDataOf(objects);
    const { hostKeys } = await sharedSecrets();
    expect(template.split('\n')[0]).toBe('## template: jinja');
    for (const node of ['control-plane', 'worker-1', 'worker-2'] as const) {
      const rendered = cloudInitRender(template, node);
      expect(rendered.startsWith('#cloud-config\n')).toBe(true);
      const doc = parse(rendered);
      expect(doc).toEqual(parse(await ownUserData(node)));
      // The host key it serves is its own, never another node's.
      expect(doc.ssh_keys.ed25519_public).toBe(hostKeys[node].publicKey.trim());
      // The simulator renders it alike.
      expect(parse(userDataOf(objects, node))).toEqual(doc);
      const file = join(dir, `${node}.yaml`);
      writeFileSync(file, rendered);
      const schema = spawnSync('cloud-init', ['schema', '--config-file', file], {
        encoding: 'utf8',
      });
      expect(`${schema.stdout}${schema.stderr}`).toContain('Valid cloud-config');
      expect(schema.status).toBe(0);
    }
  });

  it('keeps scripts verbatim: Jinja syntax inside them is not rendered', () => {
    const own =
      "#cloud-config\nruncmd:\n  - echo '{{ v1.local_hostname }} {# x #} ${#a[@]} {% if %}'\n";
    const template = renderEnvUserData(new Map([['control-plane', own]]));
    expect(parse(cloudInitRender(template, 'control-plane'))).toEqual(parse(own));
    const simulated = renderUserDataTemplate(template, {
      localHostname: 'control-plane',
      instanceId: 'control-plane.test',
    });
    expect(parse(simulated)).toEqual(parse(own));
  });

  it('leaves a VM whose hostname names no node unconfigured, and says so on its console', async () => {
    const template = envUserDataOf(await renderWith('v1.30-3node'));
    const doc = parse(cloudInitRender(template, 'worker-9'));
    expect(doc.users).toBeUndefined();
    expect(doc.write_files).toBeUndefined();
    expect(JSON.stringify(doc.bootcmd)).toContain('names no node of its env');
  });

  it('refuses a node’s user data that would end its raw block or lacks its header', () => {
    expect(() =>
      renderEnvUserData(new Map([['worker-1', '#cloud-config\nruncmd: ["{% endraw %}"]\n']])),
    ).toThrow(/worker-1 holds "endraw"/);
    expect(() => renderEnvUserData(new Map([['worker-1', 'runcmd: []\n']]))).toThrow(
      /worker-1 must start with #cloud-config/,
    );
  });
});
