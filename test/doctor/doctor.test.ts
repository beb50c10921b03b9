import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadConfig, type Config } from '../../src/config/index.js';
import { runDoctor, type CheckResult, type DoctorReport } from '../../src/doctor/index.js';
import { imagesInUse, writeImageLock } from '../../src/images/index.js';
import {
  DOCTOR_PERMISSIONS,
  KIND_RESOURCES,
  inventoryDirs,
  permissionKey,
} from '../../src/kube/index.js';
import { generateCa } from '../../src/pki/index.js';
import { restartSafePort } from '../../src/net/ports.js';
import { startRedisServer, type RedisServerHandle } from '../../src/redis/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { startStudentCluster, type StudentCluster } from '../../src/sim/inner.js';
import { kubectlBinary } from '../helpers/k8s-binaries.js';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'labvirt.js');

function byId(report: DoctorReport): Record<string, CheckResult> {
  return Object.fromEntries(report.results.map((r) => [r.id, r]));
}

function statuses(report: DoctorReport): Record<string, string> {
  return Object.fromEntries(report.results.map((r) => [r.id, r.status]));
}

/** `kubectl …` as doctor prints it in a fix, run with the test's kubectl and kubeconfig. */
async function runFix(fix: string, kubeconfig: string): Promise<void> {
  const words = [...fix.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
  expect(words[0]).toBe('kubectl');
  await run(await kubectlBinary(), [
    '--kubeconfig',
    kubeconfig,
    // Not $HOME/.kube/cache: kubectl keys it by host and port, which other simulators reused.
    `--cache-dir=${join(dirname(kubeconfig), 'kubectl-cache')}`,
    ...words.slice(1),
  ]);
}

describe('labvirt doctor against the simulated host cluster', () => {
  let dir: string;
  let sim: SimHandle;
  let redis: RedisServerHandle;
  let config: Config;
  let kubectl: (...args: string[]) => Promise<string>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-doctor-'));
    [sim, redis] = await Promise.all([
      startSim({ dir: join(dir, 'sim'), speed: 200, guests: false, nodes: 2 }),
      startRedisServer({ persistence: true }),
    ]);
    const r = new Redis(redis.url);
    await r.config('SET', 'maxmemory-policy', 'noeviction');
    r.disconnect();
    config = loadConfig({
      env: {},
      overrides: {
        kube: { kubeconfig: sim.kubeconfigPath },
        redis: { url: redis.url },
        ssh: { bindAddress: '127.0.0.1', gatewayPort: await restartSafePort() },
      },
    });
    const bin = await kubectlBinary();
    kubectl = async (...args) =>
      (
        await run(bin, [
          '--kubeconfig',
          sim.kubeconfigPath,
          `--cache-dir=${join(dir, 'kubectl-cache')}`,
          ...args,
        ])
      ).stdout;
  }, 60_000);
  afterAll(async () => {
    await Promise.all([sim?.stop(), redis?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes what a healthy install passes, and says what it cannot see', async () => {
    const calls = new Set<string>();
    const report = await runDoctor({ config, onRequest: (v, k) => calls.add(`${v} ${k}`) });
    expect(statuses(report)).toEqual({
      api: 'pass',
      'kubevirt.api': 'pass',
      'kubevirt.install': 'pass',
      'kubevirt.bridge': 'pass',
      'kubevirt.emulation': 'pass',
      // The admin identity may do everything; the simulator runs no CNI pods.
      permissions: 'pass',
      capacity: 'pass',
      cni: 'warn',
      clock: 'pass',
      // No image lock in the project (no registry here to make one).
      'images.pinned': 'warn',
      redis: 'pass',
      'redis.eviction': 'pass',
      'redis.persistence': 'pass',
      'ssh.port': 'pass',
    });
    const r = byId(report);
    expect(r['api']!.detail).toContain(sim.url);
    expect(r['kubevirt.install']!.detail).toMatch(/^v1\.\d+\.\d+, Deployed$/);
    expect(r['capacity']!.detail).toMatch(/2 schedulable node\(s\); room for \d+ env\(s\)/);
    expect(r['images.pinned']!.detail).toMatch(
      /^no image lock at \S+\/vm-templates\/images\/images\.lock\.yaml: .* pinned by tag only/,
    );
    expect(r['images.pinned']!.detail).toContain('run `labvirt images lock`');
    for (const x of report.results.filter((x) => x.status !== 'pass')) expect(x.fix).toBeTruthy();
    // What doctor reads is what the chart's doctor role grants, no more, no less.
    const made = [...calls].map((c) => {
      const [verb, kind] = c.split(' ') as [string, string];
      return permissionKey({ ...KIND_RESOURCES[kind]!, verb: verb as never });
    });
    expect(made.sort()).toEqual(DOCTOR_PERMISSIONS.map(permissionKey).sort());
  }, 60_000);

  it('fails naming each call the identity may not make (deploy/rbac.yaml less one verb)', async () => {
    // What an operator does, with a role that lacks `delete` on namespaces.
    const rbac = readFileSync(join(import.meta.dirname, '..', '..', 'deploy', 'rbac.yaml'), 'utf8');
    const narrowed = rbac.replace(
      "verbs: ['create', 'delete', 'get', 'list', 'patch', 'watch']",
      "verbs: ['create', 'get', 'list', 'patch', 'watch']",
    );
    expect(narrowed).not.toBe(rbac);
    const file = join(dir, 'rbac-narrowed.yaml');
    writeFileSync(file, narrowed);
    await kubectl('create', 'namespace', 'labvirt');
    await kubectl('apply', '-f', file);
    const asLabvirt = sim.kubeconfigFor('labvirt', 'labvirt');
    const report = await runDoctor({
      config: { ...config, kube: { ...config.kube, kubeconfig: asLabvirt } },
    });
    const permissions = byId(report)['permissions']!;
    expect(permissions.status).toBe('fail');
    expect(permissions.detail).toBe('missing (cluster-wide): delete namespaces (tear an env down)');
    expect(permissions.fix).toContain('ClusterRole');
    expect(report.worst).toBe('fail');
  }, 60_000);

  it('fails when KubeVirt forbids bridge binding, and its fix works', async () => {
    await kubectl(
      '-n',
      'kubevirt',
      'patch',
      'kubevirt',
      'kubevirt',
      '--type',
      'merge',
      '-p',
      '{"spec":{"configuration":{"network":{"permitBridgeInterfaceOnPodNetwork":false}}}}',
    );
    const bad = byId(await runDoctor({ config }))['kubevirt.bridge']!;
    expect(bad.status).toBe('fail');
    expect(bad.detail).toContain('permitBridgeInterfaceOnPodNetwork is false');
    await runFix(bad.fix!, sim.kubeconfigPath);
    expect(byId(await runDoctor({ config }))['kubevirt.bridge']!.status).toBe('pass');
  }, 60_000);

  it('warns when KubeVirt runs in software emulation', async () => {
    await kubectl(
      '-n',
      'kubevirt',
      'patch',
      'kubevirt',
      'kubevirt',
      '--type',
      'merge',
      '-p',
      '{"spec":{"configuration":{"developerConfiguration":{"useEmulation":true}}}}',
    );
    const r = byId(await runDoctor({ config }))['kubevirt.emulation']!;
    expect(r).toMatchObject({ status: 'warn', fix: expect.stringContaining('/dev/kvm') });
    await kubectl(
      '-n',
      'kubevirt',
      'patch',
      'kubevirt',
      'kubevirt',
      '--type',
      'merge',
      '-p',
      '{"spec":{"configuration":{"developerConfiguration":{"useEmulation":false}}}}',
    );
  }, 60_000);

  it('fails when Redis is down, evicts keys, and names the fix', async () => {
    const down = loadConfig({
      env: {},
      overrides: { ...config, redis: { url: `redis://127.0.0.1:${await restartSafePort()}` } },
    });
    const r = byId(await runDoctor({ config: down }))['redis']!;
    expect(r.status).toBe('fail');
    expect(r.detail).toMatch(/ECONNREFUSED/);
    expect(r.fix).toMatch(/redis\.url/);

    const client = new Redis(redis.url);
    await client.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      const evicting = byId(await runDoctor({ config }))['redis.eviction']!;
      expect(evicting).toMatchObject({
        status: 'fail',
        fix: expect.stringContaining('noeviction'),
      });
    } finally {
      await client.config('SET', 'maxmemory-policy', 'noeviction');
      client.disconnect();
    }
  }, 60_000);

  it('warns when the SSH gateway port is taken', async () => {
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(config.ssh.gatewayPort, '127.0.0.1', r));
    try {
      const r = byId(await runDoctor({ config }))['ssh.port']!;
      expect(r).toMatchObject({ status: 'warn', detail: expect.stringContaining('in use') });
    } finally {
      await new Promise<void>((r) => holder.close(() => r()));
    }
  }, 60_000);

  it('the CLI prints JSON and exits 4 on a failure, 3 on warnings only', async () => {
    const file = join(dir, 'labvirt.yaml');
    writeFileSync(file, stringify({ kube: config.kube, redis: config.redis, ssh: config.ssh }));
    const failing = await run('node', [BIN, '--config', file, 'doctor', '--json'], {
      env: { PATH: process.env.PATH ?? '', LABVIRT_REDIS_URL: 'redis://127.0.0.1:1' },
    }).then(
      () => ({ code: 0, stdout: '' }),
      (err: { code: number; stdout: string }) => err,
    );
    expect(failing.code).toBe(4);
    const report = JSON.parse(failing.stdout) as DoctorReport;
    expect(report.worst).toBe('fail');
    expect(byId(report)['redis']!.status).toBe('fail');

    const warning = await run('node', [BIN, '--config', file, 'doctor'], {
      env: { PATH: process.env.PATH ?? '' },
    }).then(
      () => ({ code: 0, stdout: '' }),
      (err: { code: number; stdout: string }) => err,
    );
    expect(warning.code).toBe(3);
    expect(warning.stdout).toMatch(/^WARN {2}A CNI that enforces NetworkPolicy/m);
    expect(warning.stdout).toMatch(/^ {6}fix: /m);
    // Two CLI processes: slow on a loaded machine.
  }, 180_000);

  it('fails when no KubeVirt resource is installed', async () => {
    const saved = await kubectl('-n', 'kubevirt', 'get', 'kubevirt', 'kubevirt', '-o', 'yaml');
    await kubectl('-n', 'kubevirt', 'delete', 'kubevirt', 'kubevirt');
    try {
      const r = byId(await runDoctor({ config }))['kubevirt.install']!;
      expect(r).toMatchObject({
        status: 'fail',
        detail: 'no KubeVirt resource in namespace kubevirt',
      });
    } finally {
      const obj = parse(saved) as { metadata: Record<string, unknown> };
      obj.metadata = { name: 'kubevirt', namespace: 'kubevirt' };
      const file = join(dir, 'kubevirt.yaml');
      writeFileSync(file, stringify(obj));
      // No schema of KubeVirt's install resource is beside the project, so the
      // simulator publishes none for kubectl's client-side validation.
      await kubectl('create', '--validate=false', '-f', file);
      // Status is the operator's to write, through its subresource.
      await kubectl(
        '-n',
        'kubevirt',
        'patch',
        'kubevirt',
        'kubevirt',
        '--subresource=status',
        '--type',
        'merge',
        '-p',
        JSON.stringify({ status: (parse(saved) as { status: unknown }).status }),
      );
      expect(byId(await runDoctor({ config }))['kubevirt.install']!.status).toBe('pass');
    }
  }, 60_000);

  it('the CLI exits 0 and prints only PASS lines on an install with nothing to warn about', async () => {
    // What the sim cannot show by itself: a NetworkPolicy-enforcing CNI's pods
    // and an image lock holding every image the envs use (digests made up:
    // doctor reads the lock, it does not pull).
    await kubectl(
      'run',
      'calico-node-x7k2p',
      '--namespace=kube-system',
      '--image=docker.io/calico/node:v3.29.1',
      '--restart=Never',
    );
    const lockPath = join(dir, 'images.lock.yaml');
    writeImageLock(
      lockPath,
      new Map(
        imagesInUse(config, inventoryDirs(), { skipUnknownMinors: true }).map((u) => [
          u.name,
          `sha256:${createHash('sha256').update(u.name).digest('hex')}`,
        ]),
      ),
    );
    const file = join(dir, 'labvirt-healthy.yaml');
    writeFileSync(
      file,
      stringify({
        kube: config.kube,
        redis: config.redis,
        ssh: config.ssh,
        vm: { imagesLock: lockPath },
      }),
    );
    try {
      const { code, stdout } = await run('node', [BIN, '--config', file, 'doctor'], {
        env: { PATH: process.env.PATH ?? '' },
      }).then(
        (r) => ({ code: 0, stdout: r.stdout }),
        (err: { code: number; stdout: string }) => err,
      );
      const verdicts = stdout.split('\n').filter((l) => /^[A-Z]{4} /.test(l));
      // Any line that is not a PASS is shown with the exit code when this fails.
      expect({ code, notPassed: verdicts.filter((l) => !l.startsWith('PASS')) }).toEqual({
        code: 0,
        notPassed: [],
      });
      expect(verdicts.length).toBeGreaterThanOrEqual(14);
      expect(stdout).toMatch(/^PASS {2}A CNI that enforces NetworkPolicy/m);
      expect(stdout).toMatch(/^PASS {2}Images pinned by digest/m);
    } finally {
      await kubectl(
        'delete',
        'pod',
        'calico-node-x7k2p',
        '--namespace=kube-system',
        '--wait=false',
      );
    }
  }, 180_000);
});

describe('labvirt doctor when the cluster is too small', () => {
  let dir: string;
  let sim: SimHandle;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-doctor-small-'));
    // One node with 4 GiB: room for one 1-node env, not for a 3-node one.
    sim = await startSim({
      dir: join(dir, 'sim'),
      speed: 200,
      guests: false,
      nodes: 1,
      nodeCpu: 8,
      nodeMemory: 4 * 2 ** 30,
    });
  }, 60_000);
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const configWith = (flavors: Record<string, unknown>) =>
    loadConfig({
      env: {},
      overrides: {
        kube: { kubeconfig: sim.kubeconfigPath },
        redis: { url: 'redis://127.0.0.1:1' },
        flavors,
      },
    });

  it('fails when the warm target does not fit, saying how many envs do', async () => {
    const config = configWith({
      'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 2, maxTotal: 4 },
    });
    const r = byId(await runDoctor({ config }))['capacity']!;
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('room for 0 env(s) now (0 × v1.30-3node); warm target 2');
    expect(r.fix).toMatch(/add nodes/);
  }, 60_000);

  it('warns when the warm target fits but maxTotal does not', async () => {
    const config = configWith({
      'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 1, maxTotal: 5 },
    });
    const r = byId(await runDoctor({ config }))['capacity']!;
    expect(r.status).toBe('warn');
    expect(r.detail).toMatch(/room for [1-4] env\(s\) now .*warm target 1, maxTotal 5/);
  }, 60_000);
});

describe('labvirt doctor against a Kubernetes cluster without KubeVirt', () => {
  let cluster: StudentCluster;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-doctor-plain-'));
    // The simulator's plain Kubernetes API server (the one student clusters get).
    cluster = await startStudentCluster({
      namespace: 'plain',
      ca: await generateCa({ commonName: 'kubernetes', algorithm: 'ecdsa' }),
      nodeName: 'plain-node',
      nodeIp: '127.0.0.1',
      serviceCidr: '10.96.0.0/16',
      endpoint: 'localhost',
      controlPlaneName: 'plain',
      kubernetesVersion: '1.31',
      namespaceDeleteDelayMs: 10,
      quotaStatusDelayMs: 10,
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("fails on KubeVirt's API, with how to install it", async () => {
    const kubeconfig = join(dir, 'admin.conf');
    writeFileSync(
      kubeconfig,
      cluster.adminConf.replace(
        /server: https:\/\/[^\s]+/,
        `server: https://127.0.0.1:${cluster.port}`,
      ),
    );
    const config = loadConfig({
      env: {},
      overrides: { kube: { kubeconfig }, redis: { url: 'redis://127.0.0.1:1' } },
    });
    const report = await runDoctor({ config });
    const r = byId(report);
    expect(r['api']!.status).toBe('pass');
    expect(r['kubevirt.api']).toMatchObject({
      status: 'fail',
      detail: 'kubevirt.io/v1 does not serve virtualmachines, virtualmachineinstances',
      fix: expect.stringContaining('install KubeVirt'),
    });
    // Nothing about KubeVirt's configuration is claimed when KubeVirt is absent.
    expect(r['kubevirt.bridge']).toBeUndefined();
    expect(report.worst).toBe('fail');
  }, 60_000);
});
