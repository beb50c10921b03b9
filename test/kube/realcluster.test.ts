/* eslint-disable @typescript-eslint/no-explicit-any -- rendered objects are inspected field by field */
// What a real KubeVirt host needs from the rendered env (issue 13): a writable
// data disk per role counted in the quota, registry mirrors and a proxy in
// the guests, DNS peers that match the host's DNS, upstream resolvers for the
// student cluster, one provisioning deadline, and user data that cloud-init
// itself accepts.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/index.js';
import {
  cloudInitDir,
  evaluateNetworkPolicies,
  type NetworkPolicyLike,
  type PodEndpoint,
} from '../../src/kube/index.js';
import { byKind, configWith, named, renderWith, userDataOf } from './helpers.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'containerd');
const LIB = join(cloudInitDir(), 'lib.sh');
const dir = mkdtempSync(join(tmpdir(), 'labvirt-realcluster-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fileOf(doc: any, path: string): any {
  return doc.write_files.find((f: any) => f.path === path);
}

function envOf(doc: any): Record<string, string> {
  const text = fileOf(doc, '/etc/labvirt/cluster.env').content as string;
  return Object.fromEntries(
    text
      .split('\n')
      .map((l) => /^([A-Z_0-9]+)='(.*)'$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1], m[2]]),
  );
}

function bashWithLib(script: string, env: Record<string, string> = {}, input?: string): string {
  return execFileSync('bash', ['-c', `set -euo pipefail; . ${LIB}; ${script}`], {
    encoding: 'utf8',
    input,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
  });
}

describe('the data disk', () => {
  it('gives every VM a blank disk of its role’s size, found by serial, and asks the scheduler for the room', async () => {
    const objects = await renderWith('v1.30-3node', {
      vm: {
        controlPlane: { cpus: 2, memory: '2Gi', dataDisk: '30Gi' },
        worker: { cpus: 1, memory: '1Gi', dataDisk: '15Gi' },
      },
    });
    const sizes: Record<string, string> = {};
    for (const vm of byKind(objects, 'VirtualMachine')) {
      const spec = vm.spec.template.spec;
      const volume = spec.volumes.find((v: any) => v.name === 'datadisk');
      const disk = spec.domain.devices.disks.find((d: any) => d.name === 'datadisk');
      expect(disk).toEqual({ name: 'datadisk', serial: 'labvirt-data', disk: { bus: 'virtio' } });
      sizes[vm.metadata.name] = volume.emptyDisk.capacity;
      // The disk plus 2Gi for the containerDisk's overlay and logs.
      const expected = vm.metadata.name === 'control-plane' ? '32Gi' : '17Gi';
      expect(spec.domain.resources.requests['ephemeral-storage']).toBe(expected);
    }
    expect(sizes).toEqual({ 'control-plane': '30Gi', 'worker-1': '15Gi', 'worker-2': '15Gi' });
  });

  it('is counted in the quota, with a default request for the launchers’ side containers', async () => {
    const objects = await renderWith('v1.30-3node');
    const hard = named(objects, 'ResourceQuota', 'env-quota').spec.hard;
    // 3 × (20Gi disk + 2Gi overhead + 3 side containers × 64Mi) = 66Gi + 576Mi.
    expect(hard['requests.ephemeral-storage']).toBe(`${66 * 1024 + 576}Mi`);
    const limits = named(objects, 'LimitRange', 'limits').spec.limits[0];
    expect(limits.defaultRequest['ephemeral-storage']).toBe('64Mi');
    const one = named(await renderWith('v1.31-1node'), 'ResourceQuota', 'env-quota');
    expect(one.spec.hard['requests.ephemeral-storage']).toBe(`${22 * 1024 + 192}Mi`);
  });

  it('is mounted by the guest under containerd’s and the kubelet’s directories before anything is installed', () => {
    const installer = readFileSync(join(cloudInitDir(), 'install-kubernetes.sh'), 'utf8');
    expect(installer).toContain('/dev/disk/by-id/virtio-labvirt-data');
    expect(installer).toMatch(/DATA_DIRS=\(\/var\/lib\/containerd \/var\/lib\/kubelet\)/);
    const main = installer.slice(installer.indexOf('main() {'));
    expect(main.indexOf('data_disk')).toBeGreaterThan(0);
    expect(main.indexOf('data_disk')).toBeLessThan(main.indexOf('containerd_runtime'));
  });
});

describe('the control plane’s memory', () => {
  it('must be at least 2Gi (kubeadm’s minimum), with a clear error', () => {
    let err: unknown;
    try {
      configWith({ vm: { controlPlane: { cpus: 2, memory: '1536Mi' } } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/vm\.controlPlane\.memory.*at least 2Gi/);
    expect(
      configWith({ vm: { controlPlane: { cpus: 2, memory: '2048Mi' } } }).vm.controlPlane.memory,
    ).toBe('2048Mi');
  });
});

describe('registry mirrors and proxy in the guests', () => {
  const overrides = {
    vm: {
      registryMirrors: {
        'docker.io': ['https://mirror.example.org/', 'https://second.example.org'],
        'registry.k8s.io': ['https://k8s-mirror.example.org'],
      },
      proxy: {
        http: 'http://proxy.example.org:3128',
        https: 'http://proxy.example.org:3128',
        noProxy: ['.example.internal'],
      },
    },
    network: { hostClusterDomain: 'k8s.example.org' },
  };

  it('writes one containerd hosts.toml per mirrored registry', async () => {
    const doc = parse(userDataOf(await renderWith('v1.30-3node', overrides), 'worker-1'));
    const docker = fileOf(doc, '/etc/containerd/certs.d/docker.io/hosts.toml').content as string;
    expect(docker).toContain('server = "https://registry-1.docker.io"');
    expect(docker.indexOf('[host."https://mirror.example.org"]')).toBeLessThan(
      docker.indexOf('[host."https://second.example.org"]'),
    );
    expect(docker).toContain('capabilities = ["pull", "resolve"]');
    const k8s = fileOf(doc, '/etc/containerd/certs.d/registry.k8s.io/hosts.toml').content;
    expect(k8s).toContain('server = "https://registry.k8s.io"');
    expect(k8s).toContain('[host."https://k8s-mirror.example.org"]');
  });

  it('gives apt, the scripts (curl, kubeadm) and containerd the proxy, never for the cluster’s own addresses', async () => {
    const doc = parse(userDataOf(await renderWith('v1.30-3node', overrides), 'control-plane'));
    const env = fileOf(doc, '/etc/labvirt/proxy.env');
    expect(env.permissions).toBe('0600');
    expect(env.content).toContain("export https_proxy='http://proxy.example.org:3128'");
    const noProxy = /export no_proxy='([^']*)'/.exec(env.content)![1]!.split(',');
    for (const entry of [
      'localhost',
      '10.243.0.0/16',
      '10.95.0.0/16',
      '.svc',
      '.k8s.example.org',
      '.example.internal',
    ]) {
      expect(noProxy).toContain(entry);
    }
    expect(fileOf(doc, '/etc/apt/apt.conf.d/95labvirt-proxy').content).toContain(
      'Acquire::https::Proxy "http://proxy.example.org:3128";',
    );
    const unit = fileOf(doc, '/etc/systemd/system/containerd.service.d/labvirt-proxy.conf').content;
    expect(unit).toContain('[Service]');
    expect(unit).toContain('Environment="HTTPS_PROXY=http://proxy.example.org:3128"');
    // The scripts source the proxy settings with the cluster's settings.
    expect(readFileSync(LIB, 'utf8')).toContain('/etc/labvirt/proxy.env');
  });

  it('writes no proxy files without a proxy, and refuses a proxy URL that could break out of its quotes', async () => {
    const doc = parse(userDataOf(await renderWith('v1.30-3node'), 'control-plane'));
    expect(fileOf(doc, '/etc/labvirt/proxy.env')).toBeUndefined();
    expect(() =>
      configWith({ vm: { proxy: { http: "http://p.example.org/'$(reboot)'" } } }),
    ).toThrow(/vm\.proxy\.http/);
    expect(() => configWith({ vm: { registryMirrors: { 'docker.io': ['ftp://x'] } } })).toThrow(
      /registryMirrors/,
    );
  });
});

describe('DNS', () => {
  function launcher(objects: any[], vm: string, ip: string): PodEndpoint {
    const v = byKind(objects, 'VirtualMachine').find((x) => x.metadata.name === vm);
    return {
      namespace: v.metadata.namespace,
      namespaceLabels: { 'kubernetes.io/metadata.name': v.metadata.namespace },
      podLabels: { ...v.spec.template.metadata.labels, 'kubevirt.io': 'virt-launcher' },
      ip,
    };
  }
  const pod = (namespace: string, labels: Record<string, string>, ip: string): PodEndpoint => ({
    namespace,
    namespaceLabels: { 'kubernetes.io/metadata.name': namespace },
    podLabels: labels,
    ip,
  });
  const kubeDns = pod('kube-system', { 'k8s-app': 'kube-dns' }, '10.244.0.2');
  const openshiftDns = pod(
    'openshift-dns',
    { 'dns.operator.openshift.io/daemonset-dns': 'default' },
    '10.128.0.9',
  );
  async function reach(hostDns: Record<string, unknown>) {
    const objects = await renderWith('v1.30-3node', { network: { hostDns } });
    const policies = byKind(objects, 'NetworkPolicy') as NetworkPolicyLike[];
    const vm = launcher(objects, 'worker-1', '10.244.3.4');
    return (to: PodEndpoint | { ip: string }, port: number, protocol: 'UDP' | 'TCP' = 'UDP') =>
      evaluateNetworkPolicies(policies, { from: vm, to, port, protocol }).allowed;
  }

  it('kube-dns (the default) lets the VMs query kube-dns pods only', async () => {
    const can = await reach({});
    expect(can(kubeDns, 53)).toBe(true);
    expect(can(kubeDns, 53, 'TCP')).toBe(true);
    expect(can({ ip: '169.254.20.10' }, 53)).toBe(false);
    expect(can(openshiftDns, 5353)).toBe(false);
  });

  it('nodelocaldns adds NodeLocal DNSCache’s 169.254.20.10, not the rest of link-local', async () => {
    const can = await reach({ preset: 'nodelocaldns' });
    expect(can({ ip: '169.254.20.10' }, 53)).toBe(true);
    expect(can(kubeDns, 53)).toBe(true);
    expect(can({ ip: '169.254.169.254' }, 53)).toBe(false);
    expect(can({ ip: '169.254.169.254' }, 80, 'TCP')).toBe(false);
  });

  it('openshift lets the VMs reach openshift-dns on 5353, and fields replace a preset’s', async () => {
    const can = await reach({ preset: 'openshift' });
    expect(can(openshiftDns, 5353)).toBe(true);
    expect(can(kubeDns, 53)).toBe(false);
    const custom = await reach({
      preset: 'kube-dns',
      namespace: 'dns',
      podLabels: { app: 'coredns' },
    });
    expect(custom(pod('dns', { app: 'coredns' }, '10.244.9.9'), 53)).toBe(true);
    expect(custom(kubeDns, 53)).toBe(false);
  });

  it('gives the student cluster’s CoreDNS the configured upstreams, and the scripts the host cluster domain', async () => {
    const doc = parse(
      userDataOf(
        await renderWith('v1.30-3node', {
          network: { upstreamDns: ['192.0.2.53'], hostClusterDomain: 'k8s.example.org' },
        }),
        'worker-2',
      ),
    );
    expect(fileOf(doc, '/etc/labvirt/upstream-resolv.conf').content).toMatch(
      /^nameserver 192\.0\.2\.53$/m,
    );
    expect(fileOf(doc, '/etc/labvirt/upstream-resolv.conf').content).not.toMatch(/10\.96\./);
    expect(envOf(doc).LABVIRT_HOST_CLUSTER_DOMAIN).toBe('k8s.example.org');
    expect(() => configWith({ network: { upstreamDns: ['not-an-ip'] } })).toThrow(/upstreamDns/);
  });
});

describe('one provisioning deadline', { timeout: 120_000 }, () => {
  it('is handed to the guests, whose retries stop when labvirt stops waiting', async () => {
    const doc = parse(
      userDataOf(
        await renderWith('v1.30-3node', { pool: { provisionDeadlineSeconds: 1500 } }),
        'worker-1',
      ),
    );
    expect(envOf(doc).LABVIRT_DEADLINE_SECONDS).toBe('1500');
    // No fixed retry budget is left in the scripts: every long wait is bounded by the deadline.
    for (const name of ['control-plane.sh', 'worker.sh', 'install-kubernetes.sh']) {
      const text = readFileSync(join(cloudInitDir(), name), 'utf8');
      expect(text).not.toMatch(/retry_for [0-9]/);
    }
  });

  it('counts from the first run of the bootstrap on this disk', () => {
    const started = join(dir, 'started');
    writeFileSync(started, String(Math.floor(Date.now() / 1000) - 100));
    const left = (deadline: number) =>
      Number(
        bashWithLib(`LABVIRT_BOOTSTRAP_STARTED=${started}; seconds_left`, {
          LABVIRT_DEADLINE_SECONDS: String(deadline),
        }).trim(),
      );
    // Bash may start slowly on a loaded machine: allow for the time the call took.
    const before = Date.now();
    const remaining = left(1000);
    const took = Math.ceil((Date.now() - before) / 1000);
    expect(remaining).toBeGreaterThanOrEqual(900 - took - 1);
    expect(remaining).toBeLessThanOrEqual(900);
    expect(left(50)).toBe(0);
    // Past the deadline the command is still tried once, then the wait fails.
    expect(() =>
      bashWithLib(`LABVIRT_BOOTSTRAP_STARTED=${started}; retry_until_deadline 0 false`, {
        LABVIRT_DEADLINE_SECONDS: '50',
      }),
    ).toThrow();
    const fresh = join(dir, 'fresh');
    const start = Date.now();
    const freshLeft = Number(
      bashWithLib(`LABVIRT_BOOTSTRAP_STARTED=${fresh}; seconds_left`, {
        LABVIRT_DEADLINE_SECONDS: '600',
      }).trim(),
    );
    // A first run starts the clock: nearly the whole deadline remains.
    expect(freshLeft).toBeGreaterThanOrEqual(600 - Math.ceil((Date.now() - start) / 1000) - 1);
    expect(freshLeft).toBeLessThanOrEqual(600);
  });
});

describe('package installs in the guests', { timeout: 120_000 }, () => {
  it('finish an install a reboot interrupted (dpkg --configure -a) before apt runs, once per run', () => {
    const installer = readFileSync(join(cloudInitDir(), 'install-kubernetes.sh'), 'utf8');
    const fn = /^apt_install\(\) \{\n[\s\S]*?\n\}$/m.exec(installer)![0];
    const calls = join(dir, 'apt-calls');
    const out = bashWithLib(
      `apt_updated=false
      dpkg() { echo "dpkg $*" >> ${calls}; }
      apt-get() { echo "apt-get $*" >> ${calls}; }
      ${fn}
      apt_install containerd; apt_install kubelet kubeadm; cat ${calls}`,
      { LABVIRT_DEADLINE_SECONDS: '60', LABVIRT_BOOTSTRAP_STARTED: join(dir, 'apt-started') },
    );
    expect(out.trim().split('\n')).toEqual([
      'dpkg --configure -a',
      'apt-get update -q',
      'apt-get install -y -q --no-install-recommends containerd',
      'apt-get install -y -q --no-install-recommends kubelet kubeadm',
    ]);
  });
});

describe('containerd and Calico in the guests', { timeout: 120_000 }, () => {
  it('set kubeadm’s pause image, systemd cgroups and the mirrors’ config_path in containerd’s real default config', () => {
    const defaults = readFileSync(join(FIXTURES, 'config-default-1.6.toml'), 'utf8');
    const out = bashWithLib(
      'containerd_config_from_default registry.k8s.io/pause:3.9',
      {},
      defaults,
    );
    expect(out).toMatch(/^\s*sandbox_image = "registry\.k8s\.io\/pause:3\.9"$/m);
    expect(out).toMatch(/^\s*SystemdCgroup = true$/m);
    expect(out).toMatch(
      /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]\n\s*config_path = "\/etc\/containerd\/certs\.d"/,
    );
    expect(out.trimEnd().split('\n').length).toBe(defaults.trimEnd().split('\n').length);
    expect(() => bashWithLib('containerd_config_from_default x', {}, 'version = 2\n')).toThrow();
  });

  it('pull Calico from quay.io, which has no anonymous pull limit', () => {
    const manifest = join(dir, 'calico.yaml');
    writeFileSync(
      manifest,
      [
        '          image: docker.io/calico/cni:v3.29.3',
        '          image: calico/node:v3.29.3',
        '          image: quay.io/calico/kube-controllers:v3.29.3',
        '',
      ].join('\n'),
    );
    expect(bashWithLib(`calico_from_quay ${manifest}`)).toBe(
      [
        '          image: quay.io/calico/cni:v3.29.3',
        '          image: quay.io/calico/node:v3.29.3',
        '          image: quay.io/calico/kube-controllers:v3.29.3',
        '',
      ].join('\n'),
    );
  });
});

// These spawn bash or cloud-init (Python) several times: seconds each, far
// more on a loaded 2-core machine, so the default 30 s per test is too tight.
/** Debian's cloud-init package; CI installs it (.ci/run). */
const CLOUD_INIT = spawnSync('cloud-init', ['--version']).status === 0;

// Every node's rendered user data passes the schema: test/kube/env-user-data.test.ts.
describe('rendered user data', { timeout: 120_000 }, () => {
  it('is refused by `cloud-init schema` when broken (the check can fail)', () => {
    if (!CLOUD_INIT) throw new Error('cloud-init is missing: apt-get install cloud-init');
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, '#cloud-config\nwrite_files:\n  - content: 12\n    permissions: 644\n');
    const r = spawnSync('cloud-init', ['schema', '--config-file', file], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
  });
});

describe('`ssh worker-1` between an env’s nodes (real guests)', { timeout: 120_000 }, () => {
  it('names every node in the host’s DNS: a headless `nodes` Service and each VM’s subdomain', async () => {
    const objects = await renderWith('v1.30-3node');
    const svc = named(objects, 'Service', 'nodes');
    expect(svc.spec).toEqual({
      clusterIP: 'None',
      // Published before the VMs are Ready, so a name resolves as soon as its VM has an IP.
      publishNotReadyAddresses: true,
      selector: { 'labvirt.io/env': 'abcd1234' },
      ports: [{ name: 'ssh', protocol: 'TCP', port: 22, targetPort: 22 }],
    });
    for (const vm of byKind(objects, 'VirtualMachine')) {
      expect(vm.spec.template.spec.hostname).toBe(vm.metadata.name);
      expect(vm.spec.template.spec.subdomain).toBe('nodes');
      // The Service selects the launcher pods through these labels.
      expect(vm.spec.template.metadata.labels['labvirt.io/env']).toBe('abcd1234');
    }
    // The quota leaves room for it beside the mirrored NodePorts, and for no other Service.
    const quota = named(objects, 'ResourceQuota', 'env-quota');
    expect(Number(quota.spec.hard.services)).toBe(1 + configWith().sync.maxPortsPerEnv);
  });

  it('gives every node the search domain, every node’s host key by name, and one student key for the env', async () => {
    const objects = await renderWith('v1.30-3node', {
      network: { hostClusterDomain: 'corp.example' },
    });
    const pki = named(objects, 'Secret', 'cloudinit');
    const fromPki = (key: string) => Buffer.from(pki.data[key], 'base64').toString('utf8').trim();
    const domain = 'nodes.lab-abcd1234.svc.corp.example';
    const studentKeys = new Set<string>();
    for (const node of ['control-plane', 'worker-1', 'worker-2']) {
      const doc = parse(userDataOf(objects, node));
      expect(fileOf(doc, '/etc/systemd/resolved.conf.d/labvirt-nodes.conf').content).toContain(
        `[Resolve]\nDomains=${domain}\n`,
      );
      const known = (fileOf(doc, '/etc/ssh/ssh_known_hosts').content as string)
        .split('\n')
        .filter((l) => l && !l.startsWith('#'));
      expect(known).toEqual([
        `control-plane,control-plane.${domain} ${fromPki('host-control-plane.pub')}`,
        `worker-1,worker-1.${domain} ${fromPki('host-worker-1.pub')}`,
        `worker-2,worker-2.${domain} ${fromPki('host-worker-2.pub')}`,
      ]);
      // The student trusts the env's student key; its private half is root-only until the bootstrap copies it.
      const student = doc.users.find((u: any) => u.name === 'student');
      expect(student.ssh_authorized_keys).toEqual([fromPki('student.pub')]);
      const key = fileOf(doc, '/etc/labvirt/student-ssh.key');
      expect(key).toMatchObject({ permissions: '0600', owner: 'root:root' });
      expect(key.content).toBe(`${fromPki('student.key')}\n`);
      expect(fileOf(doc, '/etc/labvirt/student-ssh.key.pub').content).toBe(
        `${fromPki('student.pub')}\n`,
      );
      studentKeys.add(fromPki('student.pub'));
    }
    expect(studentKeys.size).toBe(1);
    // The private key in the Secret is the pair of the public one every node trusts.
    const keyFile = join(dir, 'student-key');
    writeFileSync(keyFile, `${fromPki('student.key')}\n`, { mode: 0o600 });
    const derived = execFileSync('ssh-keygen', ['-y', '-f', keyFile], { encoding: 'utf8' });
    expect(derived.trim().split(' ').slice(0, 2)).toEqual(
      fromPki('student.pub').split(' ').slice(0, 2),
    );
    // A one-node env knows only its control plane.
    const single = parse(userDataOf(await renderWith('v1.31-1node'), 'control-plane'));
    expect(fileOf(single, '/etc/ssh/ssh_known_hosts').content).not.toContain('worker-1');
  });

  it('installs the key for the student and restarts the resolver once, leaving a key the student replaced', () => {
    const root = mkdtempSync(join(dir, 'guest-'));
    const home = join(root, 'home', 'student');
    execFileSync('mkdir', [
      '-p',
      join(root, 'etc/labvirt'),
      join(root, 'etc/systemd/resolved.conf.d'),
      home,
    ]);
    writeFileSync(join(root, 'etc/labvirt/student-ssh.key'), 'PRIVATE\n', { mode: 0o600 });
    writeFileSync(join(root, 'etc/labvirt/student-ssh.key.pub'), 'ssh-ed25519 AAAA env\n');
    writeFileSync(
      join(root, 'etc/systemd/resolved.conf.d/labvirt-nodes.conf'),
      '[Resolve]\nDomains=nodes.lab-x.svc.cluster.local\n',
    );
    const calls = join(root, 'calls');
    const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    // The guest's systemd and user database, as the test's stand-ins.
    const shims = `
      getent() { echo "${user}:x:1:1::${home}:/bin/bash"; }
      systemctl() { echo "systemctl $*" >> ${calls}; }
      resolvectl() { cat ${join(root, 'resolved-domains')} 2>/dev/null || true; }`;
    const env = { LABVIRT_GUEST_ROOT: root, LABVIRT_STUDENT_USER: user };
    writeFileSync(
      join(root, 'resolved-domains'),
      'Link 2 (enp1s0): lab-x.svc.cluster.local svc.cluster.local\n',
    );
    bashWithLib(`${shims}; env_node_access`, env);
    expect(readFileSync(calls, 'utf8')).toBe('systemctl try-restart systemd-resolved\n');
    expect(readFileSync(join(home, '.ssh/id_ed25519'), 'utf8')).toBe('PRIVATE\n');
    expect(readFileSync(join(home, '.ssh/id_ed25519.pub'), 'utf8')).toBe('ssh-ed25519 AAAA env\n');
    const mode = (p: string) => execFileSync('stat', ['-c', '%a', p], { encoding: 'utf8' }).trim();
    expect([mode(join(home, '.ssh')), mode(join(home, '.ssh/id_ed25519'))]).toEqual(['700', '600']);

    // The next boot: the resolver already searches the domain, the student made a key of their own.
    writeFileSync(
      join(root, 'resolved-domains'),
      'Global: nodes.lab-x.svc.cluster.local\nLink 2 (enp1s0): lab-x.svc.cluster.local\n',
    );
    writeFileSync(join(home, '.ssh/id_ed25519'), 'MINE\n');
    bashWithLib(`${shims}; env_node_access`, env);
    expect(readFileSync(calls, 'utf8')).toBe('systemctl try-restart systemd-resolved\n');
    expect(readFileSync(join(home, '.ssh/id_ed25519'), 'utf8')).toBe('MINE\n');
  });

  it('runs in both role scripts before anything else can fail', () => {
    for (const name of ['control-plane.sh', 'worker.sh']) {
      const text = readFileSync(join(cloudInitDir(), name), 'utf8');
      expect(text, name).toMatch(
        / {2}load_cluster_env\n {2}env_node_access\n {2}if is_ready; then/,
      );
    }
  });
});
