/* eslint-disable @typescript-eslint/no-explicit-any -- parsed cloud-config is inspected field by field */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { cloudInitDir } from '../../src/kube/index.js';
import { renderWith, sharedSecrets, userDataOf } from './helpers.js';

const SHELLCHECK = '/usr/bin/shellcheck';
const SCRIPTS = readdirSync(cloudInitDir()).filter((f) => f.endsWith('.sh'));
const LIB = join(cloudInitDir(), 'lib.sh');
/** The openssl CLI, for an independent check of the CA hash (skipped where it is not installed). */
const HAS_OPENSSL = spawnSync('openssl', ['version']).status === 0;

function fileOf(doc: any, path: string): any {
  return doc.write_files.find((f: any) => f.path === path);
}

/** `KEY='value'` lines of cluster.env as a map. */
function envOf(doc: any): Record<string, string> {
  const text = fileOf(doc, '/etc/labvirt/cluster.env').content as string;
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => /^[A-Z_0-9]+=/.test(l))
      .map((l) => {
        const m = /^([A-Z_0-9]+)='(.*)'$/.exec(l);
        if (!m) throw new Error(`unquoted line in cluster.env: ${l}`);
        return [m[1], m[2]];
      }),
  );
}

/** Runs bash with lib.sh sourced and the given environment. */
function bashWithLib(script: string, env: Record<string, string> = {}): string {
  return execFileSync('bash', ['-c', `set -euo pipefail; . ${LIB}; ${script}`], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
  });
}

describe('cloud-init user data', () => {
  it('is a #cloud-config YAML document with the token, CA hash and version for the control plane', async () => {
    const secrets = await sharedSecrets();
    const userData = userDataOf(await renderWith('v1.30-3node'), 'control-plane');
    expect(userData.startsWith('#cloud-config\n')).toBe(true);
    const doc = parse(userData);
    expect(doc.hostname).toBe('control-plane');
    const env = envOf(doc);
    expect(env).toMatchObject({
      LABVIRT_ROLE: 'control-plane',
      LABVIRT_NODE_NAME: 'control-plane',
      LABVIRT_ENV_NAMESPACE: 'lab-abcd1234',
      LABVIRT_K8S_MINOR: '1.30',
      LABVIRT_GOLDEN_IMAGE: 'false',
      LABVIRT_POD_CIDR: '10.243.0.0/16',
      LABVIRT_SERVICE_CIDR: '10.95.0.0/16',
      LABVIRT_CONTROL_PLANE_NAME: 'control-plane.nodes',
      LABVIRT_EXPECTED_NODES: '3',
      LABVIRT_BOOTSTRAP_TOKEN: secrets.bootstrapToken,
      LABVIRT_CA_CERT_HASH: secrets.caHash,
    });
    expect(secrets.caHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(fileOf(doc, '/etc/labvirt/cluster.env').permissions).toBe('0600');
    expect(fileOf(doc, '/etc/kubernetes/pki/ca.crt').content).toBe(secrets.ca.certPem);
    expect(fileOf(doc, '/etc/kubernetes/pki/ca.key')).toMatchObject({
      content: secrets.ca.keyPem,
      permissions: '0600',
    });
    // The per-boot script runs on the first boot too: no runcmd repeating it.
    expect(doc.runcmd).toBeUndefined();
    expect(fileOf(doc, '/var/lib/cloud/scripts/per-boot/labvirt-bootstrap').content).toContain(
      'control-plane.sh',
    );
  });

  it('gives workers the join settings but never the CA key', async () => {
    const secrets = await sharedSecrets();
    const doc = parse(userDataOf(await renderWith('v1.30-3node'), 'worker-2'));
    expect(doc.hostname).toBe('worker-2');
    expect(envOf(doc)).toMatchObject({
      LABVIRT_ROLE: 'worker',
      LABVIRT_NODE_NAME: 'worker-2',
      LABVIRT_BOOTSTRAP_TOKEN: secrets.bootstrapToken,
      LABVIRT_CA_CERT_HASH: secrets.caHash,
    });
    // The only private key a worker gets is its own SSH host key.
    const text = JSON.stringify(doc);
    expect(text).not.toContain('BEGIN PRIVATE KEY');
    expect(text).not.toContain(JSON.stringify(secrets.ca.keyPem).slice(1, -1));
    expect(text).not.toContain(JSON.stringify(secrets.sshKey.privateKey).slice(1, -1));
    expect(doc.ssh_keys).toEqual({
      ed25519_private: secrets.hostKeys['worker-2'].privateKey,
      ed25519_public: secrets.hostKeys['worker-2'].publicKey,
    });
    expect(fileOf(doc, '/etc/kubernetes/pki/ca.crt')).toBeUndefined();
    expect(doc.runcmd).toBeUndefined();
    expect(fileOf(doc, '/var/lib/cloud/scripts/per-boot/labvirt-bootstrap').content).toContain(
      'worker.sh',
    );
  });

  it('installs the flavor’s Kubernetes version and says when the image is golden', async () => {
    const doc = parse(userDataOf(await renderWith('v1.31-1node'), 'control-plane'));
    expect(envOf(doc)).toMatchObject({ LABVIRT_K8S_MINOR: '1.31', LABVIRT_EXPECTED_NODES: '1' });
    const golden = parse(
      userDataOf(
        await renderWith('v1.31-1node', {
          flavors: {
            'v1.31-1node': {
              kubernetesVersion: '1.31',
              nodes: 1,
              goldenImage: true,
              image: 'example.org/golden:1.31',
            },
          },
        }),
        'control-plane',
      ),
    );
    expect(envOf(golden).LABVIRT_GOLDEN_IMAGE).toBe('true');
    // The installer reads the version and the golden flag from cluster.env.
    const installer = fileOf(golden, '/usr/local/lib/labvirt/install-kubernetes.sh')
      .content as string;
    expect(installer).toContain('pkgs.k8s.io/core:/stable:/v$LABVIRT_K8S_MINOR/deb/');
    expect(installer).toContain('LABVIRT_GOLDEN_IMAGE');
  });

  it("creates the labvirt user with the env's own key and passwordless sudo, and a student who trusts only the env's student key", async () => {
    const secrets = await sharedSecrets();
    const doc = parse(userDataOf(await renderWith('v1.31-1node'), 'control-plane'));
    const labvirt = doc.users.find((u: any) => u.name === 'labvirt');
    const student = doc.users.find((u: any) => u.name === 'student');
    expect(labvirt).toMatchObject({
      sudo: 'ALL=(ALL) NOPASSWD:ALL',
      ssh_authorized_keys: [secrets.sshKey.publicKey],
    });
    expect(student).toMatchObject({ sudo: 'ALL=(ALL) NOPASSWD:ALL' });
    // Not labvirt's key: only the env's own student key (ssh between its
    // nodes); the student's personal key is appended at claim.
    expect(student.ssh_authorized_keys).toEqual([secrets.studentKey.publicKey]);
    expect(secrets.studentKey.publicKey).not.toBe(secrets.sshKey.publicKey);
    expect(doc.users.map((u: any) => u.name)).toEqual(['labvirt', 'student']);
    expect(doc.ssh_pwauth).toBe(false);
    // The node's host key is the one labvirt generated, and the only one it has.
    expect(doc.ssh_keys.ed25519_public).toBe(secrets.hostKeys['control-plane'].publicKey);
    expect(doc.ssh_deletekeys).toBe(true);
    expect(doc.ssh_genkeytypes).toBeUndefined();
  });

  it('embeds every script of cloud-init/ it references verbatim, and nothing refers to a missing file', async () => {
    const doc = parse(userDataOf(await renderWith('v1.30-3node'), 'control-plane'));
    for (const f of doc.write_files) {
      expect(f.source).toBeUndefined();
      expect(typeof f.content).toBe('string');
    }
    for (const name of ['lib.sh', 'install-kubernetes.sh', 'control-plane.sh']) {
      const expected = execFileSync('cat', [join(cloudInitDir(), name)], { encoding: 'utf8' });
      expect(fileOf(doc, `/usr/local/lib/labvirt/${name}`).content).toBe(expected);
    }
  });

  it.skipIf(!HAS_OPENSSL)(
    'pins the CA the way kubeadm and openssl compute it, with a token in kubeadm format',
    async () => {
      const objects = await renderWith('v1.30-3node');
      const caPem = fileOf(
        parse(userDataOf(objects, 'control-plane')),
        '/etc/kubernetes/pki/ca.crt',
      ).content as string;
      const worker = envOf(parse(userDataOf(objects, 'worker-1')));
      // sha256 of the DER SubjectPublicKeyInfo, as kubeadm's docs compute it.
      const openssl = execFileSync(
        'bash',
        [
          '-c',
          'set -o pipefail; openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -d" " -f1',
        ],
        { input: caPem, encoding: 'utf8' },
      ).trim();
      expect(worker.LABVIRT_CA_CERT_HASH).toBe(`sha256:${openssl}`);
      expect(worker.LABVIRT_BOOTSTRAP_TOKEN).toMatch(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    },
  );

  it('stays far below the 1 MiB a Secret can hold, and needs a Secret (not inline data)', async () => {
    const userData = userDataOf(await renderWith('v1.30-3node'), 'control-plane');
    expect(userData.length).toBeGreaterThan(2048); // KubeVirt's inline cap
    expect(userData.length).toBeLessThan(256 * 1024);
  });
});

// Tests that spawn bash or shellcheck get 120 s: seconds each, far more on a loaded 2-core machine.
describe('cloud-init scripts', { timeout: 120_000 }, () => {
  it('include the role scripts and the shared library', () => {
    expect(SCRIPTS.sort()).toEqual([
      'control-plane.sh',
      'install-kubernetes.sh',
      'lib.sh',
      'worker.sh',
    ]);
  });

  it('pass shellcheck', () => {
    if (!existsSync(SHELLCHECK)) {
      throw new Error(
        `${SHELLCHECK} is missing: install shellcheck (apt-get install shellcheck) to lint cloud-init/*.sh`,
      );
    }
    const r = spawnSync(SHELLCHECK, ['-x', ...SCRIPTS], { cwd: cloudInitDir(), encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('are strict bash scripts (set -euo pipefail) except the sourced library', () => {
    for (const name of SCRIPTS) {
      const text = execFileSync('cat', [join(cloudInitDir(), name)], { encoding: 'utf8' });
      expect(text.startsWith('#!/bin/bash\n')).toBe(true);
      if (name !== 'lib.sh') expect(text).toMatch(/^set -euo pipefail$/m);
    }
  });

  it('write a worker’s marker only once its node is Ready, after the join', () => {
    const text = execFileSync('cat', [join(cloudInitDir(), 'worker.sh')], { encoding: 'utf8' });
    const main = text.slice(text.indexOf('main() {'));
    const join_ = main.indexOf('join_once');
    const ready = main.indexOf('node_ready "$LABVIRT_NODE_NAME"');
    const marker = main.indexOf('mark_ready');
    expect(join_).toBeGreaterThan(0);
    expect(ready).toBeGreaterThan(join_);
    expect(marker).toBeGreaterThan(ready);
    expect(text).toContain('export KUBECONFIG=/etc/kubernetes/kubelet.conf');
  });

  it('redo an interrupted kubeadm init after a reboot instead of trusting admin.conf', () => {
    const text = execFileSync('cat', [join(cloudInitDir(), 'control-plane.sh')], {
      encoding: 'utf8',
    });
    const main = text.slice(text.indexOf('main() {'));
    // init is skipped only once it has finished, not merely begun (admin.conf
    // is written early in init, before the bootstrap token exists).
    expect(main).toMatch(
      /if \[\[ ! -e "\$INIT_DONE" \]\]; then\n\s+if \[\[ -e \/etc\/kubernetes\/admin\.conf \]\]; then[\s\S]*?reset_control_plane[\s\S]*?kubeadm_init/,
    );
    const init = text.slice(
      text.indexOf('kubeadm_init() {'),
      text.indexOf('reset_control_plane() {'),
    );
    expect(init.indexOf(': >"$INIT_DONE"')).toBeGreaterThan(init.indexOf('kubeadm init --config'));
  });

  it('pin the CNI (Calico, which enforces NetworkPolicy) to one version', () => {
    const text = execFileSync('cat', [join(cloudInitDir(), 'control-plane.sh')], {
      encoding: 'utf8',
    });
    expect(text).toMatch(/^readonly CALICO_VERSION=v\d+\.\d+\.\d+$/m);
    expect(text).toContain('projectcalico/calico/$CALICO_VERSION/manifests/calico-vxlan.yaml');
  });
});

describe('cloud-init/lib.sh', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-lib-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('names the control plane with the host cluster domain from labvirt’s config', () => {
    const fqdn = (domain: string) =>
      bashWithLib('control_plane_fqdn', {
        LABVIRT_ENV_NAMESPACE: 'lab-abc',
        LABVIRT_CONTROL_PLANE_NAME: 'control-plane.nodes',
        LABVIRT_HOST_CLUSTER_DOMAIN: domain,
      }).trim();
    expect(fqdn('k8s.example.org')).toBe('control-plane.nodes.lab-abc.svc.k8s.example.org');
    expect(fqdn('cluster.local')).toBe('control-plane.nodes.lab-abc.svc.cluster.local');
  });

  it('writes a kubeadm config with labvirt’s token, the CIDRs and the DNS name as endpoint', async () => {
    const secrets = await sharedSecrets();
    const config = (minor: string) =>
      parseAllDocuments(
        bashWithLib('kubeadm_init_config control-plane.nodes.lab-abc.svc.cluster.local v1.30.6', {
          LABVIRT_K8S_MINOR: minor,
          LABVIRT_BOOTSTRAP_TOKEN: secrets.bootstrapToken,
          LABVIRT_NODE_NAME: 'control-plane',
          LABVIRT_POD_CIDR: '10.243.0.0/16',
          LABVIRT_SERVICE_CIDR: '10.95.0.0/16',
          LABVIRT_CONTROL_PLANE_NAME: 'control-plane.nodes',
          LABVIRT_ENV_NAMESPACE: 'lab-abc',
        }),
      ).map((d) => d.toJS() as any);
    const [init, cluster, kubelet] = config('1.30');
    expect(init).toMatchObject({
      apiVersion: 'kubeadm.k8s.io/v1beta3',
      kind: 'InitConfiguration',
      bootstrapTokens: [{ token: secrets.bootstrapToken }],
      // Memory is at least 2 GiB (the config refuses less): kubeadm's check stays on.
      nodeRegistration: { name: 'control-plane', ignorePreflightErrors: ['NumCPU'] },
    });
    expect(cluster).toMatchObject({
      kind: 'ClusterConfiguration',
      kubernetesVersion: 'v1.30.6',
      controlPlaneEndpoint: 'control-plane.nodes.lab-abc.svc.cluster.local:6443',
      networking: { podSubnet: '10.243.0.0/16', serviceSubnet: '10.95.0.0/16' },
    });
    expect(cluster.apiServer.certSANs).toEqual(
      expect.arrayContaining([
        'control-plane.nodes.lab-abc.svc.cluster.local',
        'control-plane.nodes.lab-abc.svc',
      ]),
    );
    // CoreDNS forwards to the configured upstreams, not to the host cluster's DNS.
    expect(kubelet).toMatchObject({
      kind: 'KubeletConfiguration',
      cgroupDriver: 'systemd',
      resolvConf: '/etc/labvirt/upstream-resolv.conf',
    });
    expect(config('1.31')[0].apiVersion).toBe('kubeadm.k8s.io/v1beta4');
    // A worker recreated long after the env was made (a blank containerDisk)
    // must still be able to join: the token never expires.
    expect(init.bootstrapTokens[0].ttl).toBe('0s');
  });

  it('tells whether a node is Ready from its Ready condition', () => {
    const bin = join(dir, 'bin');
    execFileSync('mkdir', ['-p', bin]);
    writeFileSync(
      join(bin, 'kubectl'),
      '#!/bin/bash\ncase "$3" in ok) echo True ;; notready) echo False ;; *) echo "not found" >&2; exit 1 ;; esac\n',
      { mode: 0o755 },
    );
    const ready = (node: string) =>
      bashWithLib(`if node_ready ${node}; then echo yes; else echo no; fi`, {
        PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      }).trim();
    expect(ready('ok')).toBe('yes');
    expect(ready('notready')).toBe('no');
    expect(ready('missing')).toBe('no');
  });

  it('sets the pod CIDR in Calico’s manifest, and fails on a manifest of another shape', () => {
    const manifest = join(dir, 'calico.yaml');
    writeFileSync(
      manifest,
      [
        '            - name: CALICO_IPV4POOL_VXLAN',
        '              value: "Always"',
        '            # - name: CALICO_IPV4POOL_CIDR',
        '            #   value: "192.168.0.0/16"',
        '            - name: CALICO_DISABLE_FILE_LOGGING',
        '',
      ].join('\n'),
    );
    const out = bashWithLib(`calico_set_pool_cidr ${manifest} 10.243.0.0/16`);
    expect(out).toContain(
      '            - name: CALICO_IPV4POOL_CIDR\n              value: "10.243.0.0/16"\n',
    );
    writeFileSync(manifest, 'kind: DaemonSet\n');
    expect(() => bashWithLib(`calico_set_pool_cidr ${manifest} 10.243.0.0/16`)).toThrow();
  });

  it('retries a command until it succeeds, and gives up after its time', () => {
    const counter = join(dir, 'count');
    writeFileSync(counter, '0');
    bashWithLib(
      `bump() { n=$(cat ${counter}); echo $((n + 1)) >${counter}; [ "$n" -ge 2 ]; }; retry_for 30 0 bump`,
    );
    expect(execFileSync('cat', [counter], { encoding: 'utf8' }).trim()).toBe('3');
    expect(() => bashWithLib('retry_for 0 0 false')).toThrow();
  });
});
