/**
 * NodePort sync benchmark (run: `node --expose-gc --import tsx bench/sync.bench.ts`).
 * The simulator runs in a child process (`labvirt sim`), so what is measured
 * in this process is labvirt's NodePort sync alone: one NodePortSync with its
 * real SSH executor, watching every active env's student cluster over SSH.
 * Envs are added in steps (BENCH_LEVELS, default "1,100,1000"); at each step:
 *  - mirror latency: a student creates a NodePort Service in a random watched
 *    env (client-node through an SSH tunnel, as a student's kubectl would go)
 *    → the host mirror Service and its NetworkPolicy both exist (seen by a
 *    host watch), BENCH_SAMPLES times (default 30), p50/p99;
 *    and its p50 as a ratio to one host Service write+delete measured in
 *    the same run (the floor: the machine's load moves both);
 *  - idle cost per watched env: labvirt's RSS and heap growth over the
 *    0-env baseline (after a GC when --expose-gc is given) divided by the
 *    envs watched, and CPU over BENCH_IDLE_SECONDS (default 20) of idle
 *    watching minus the 0-env baseline's, divided by the envs, as a share of
 *    one core. The students' side (an SSH connection and a client to each
 *    sampled env) lives in this process too and is counted.
 * The sync's watchdog relist runs every `sync.resyncSeconds`; BENCH_RESYNC
 * (default 60) sets it, so an idle window shorter than that measures the
 * watches only; set BENCH_IDLE_SECONDS ≥ BENCH_RESYNC to include relists.
 * Lighter than production in one way: every env shares one CA (generating
 * 1,000 RSA CAs would take the bench's whole time budget, and the CA does
 * not change what the sync does).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Api } from '@kubernetes/client-node';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { loadConfig } from '../src/config/index.js';
import { EventBus } from '../src/events/index.js';
import {
  ANNOTATIONS,
  HostCluster,
  LABELS,
  envNamespace,
  generateEnvSecrets,
  renderEnvironment,
} from '../src/kube/index.js';
import { createLogger, silentLogger } from '../src/log/index.js';
import { createExecutor, fileResolver, generateKeyPair } from '../src/ssh/index.js';
import { NodePortSync, SYNC_LABELS, mirrorName } from '../src/sync/index.js';
import { openStudentApi } from '../test/helpers/student-envs.js';

const LEVELS = (process.env.BENCH_LEVELS ?? '1,100,1000').split(',').map(Number);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 30);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 20);
const RESYNC = Number(process.env.BENCH_RESYNC ?? 60);
const MAX = Math.max(...LEVELS);
const FLAVOR = 'v1.30-1node';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(fn: () => Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}
const gc = (globalThis as { gc?: () => void }).gc;
const memory = () => {
  gc?.();
  return process.memoryUsage();
};

const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-sync-'));
const simDir = join(dir, 'sim');
const child = fork(
  join(import.meta.dirname, '..', 'bin', 'labvirt.js'),
  // A 1-node env takes about 1.8 GiB of a node with KubeVirt's overhead.
  ['sim', '--dir', simDir, '--speed', '1000', '--nodes', String(Math.ceil((MAX * 2) / 256) + 1)],
  {
    env: { ...process.env, LABVIRT_FROM_SOURCE: '1' },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  },
);
// Never leave the simulator behind, whatever ends this process.
process.once('exit', () => child.kill('SIGKILL'));
let childOut = '';
child.stdout!.on('data', (d: Buffer) => (childOut += d.toString()));
const closers: (() => void | Promise<void>)[] = [];
try {
  await waitFor(async () => /kubeconfig/i.test(childOut), 300_000, 'simulator start');
  const config = loadConfig({
    env: {},
    overrides: {
      flavors: { [FLAVOR]: { kubernetesVersion: '1.30', nodes: 1, minWarm: 0, maxTotal: MAX } },
      sync: { resyncSeconds: RESYNC },
    },
  });
  const kc = new KubeConfig();
  kc.loadFromFile(join(simDir, 'kubeconfig'));
  const host = new HostCluster(kc, { logger: silentLogger() });
  const resolve = fileResolver(join(simDir, 'guests.json'));
  const orchestrator = generateKeyPair();
  // labvirt's executor (measured) and the students' (their kubectl traffic).
  const executor = createExecutor({ privateKey: orchestrator.private, resolve });
  const students = createExecutor({ privateKey: orchestrator.private, resolve });
  closers.push(
    () => executor.close(),
    () => students.close(),
  );
  const secrets = await generateEnvSecrets();

  // Mirror arrival times, from one host watch per kind.
  const seen = new Map<string, { service?: number; policy?: number }>();
  const mark = (key: string, what: 'service' | 'policy') => {
    const s = seen.get(key) ?? {};
    s[what] ??= performance.now();
    seen.set(key, s);
  };
  // Watches end (client-side timeout): start them again until the bench is over.
  let watching = true;
  const keepWatching = (
    path: string,
    query: Record<string, string>,
    cb: Parameters<Watch['watch']>[2],
  ) => {
    let req: AbortController | undefined;
    const start = () => {
      if (!watching) return;
      new Watch(kc)
        .watch(path, query, cb, () => setTimeout(start, 10))
        .then(
          (r) => (req = r),
          () => setTimeout(start, 500),
        );
    };
    start();
    closers.push(() => {
      watching = false;
      req?.abort();
    });
  };
  keepWatching(
    '/api/v1/services',
    { labelSelector: `${SYNC_LABELS.component}=mirror` },
    (type, obj: { metadata: { namespace: string; name: string } }) => {
      if (type === 'ADDED') mark(`${obj.metadata.namespace}/${obj.metadata.name}`, 'service');
    },
  );
  keepWatching(
    '/apis/networking.k8s.io/v1/networkpolicies',
    {},
    (
      type,
      obj: {
        metadata: { namespace: string; name: string };
        spec?: { ingress?: { ports?: { port?: number }[] }[] };
      },
    ) => {
      if (obj.metadata.name !== 'allow-synced-nodeports' || type === 'DELETED') return;
      for (const p of obj.spec?.ingress?.[0]?.ports ?? [])
        mark(`${obj.metadata.namespace}/port-${p.port}`, 'policy');
    },
  );

  const sync = new NodePortSync({
    config,
    cluster: host,
    executor,
    events: new EventBus(),
    logger: createLogger({ level: process.env.BENCH_LOG_LEVEL ?? 'silent' }),
  });
  sync.start();
  closers.push(() => sync.stop());
  await sleep(1000);
  /** labvirt's CPU over an idle window, as a share of one core. */
  const idleCpu = async () => {
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const cpu = process.cpuUsage(cpu0);
    return ((cpu.user + cpu.system) / 1000 / (performance.now() - wall0)) * 100;
  };
  // The baseline: everything but the watched envs (bench watches, idle sync, timers).
  const baseCpu = await idleCpu();
  const base = memory();
  // The floor a mirror cannot beat, in the same run: one host write of a Service, then of a NetworkPolicy.
  const hostWrite: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    await host.core.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name: `floor${i}` }, spec: { type: 'NodePort', ports: [{ port: 80 }] } },
    });
    await host.core.deleteNamespacedService({ namespace: 'default', name: `floor${i}` });
    hostWrite.push(performance.now() - t0);
  }
  console.log(
    `baseline (0 envs): labvirt idle CPU ${baseCpu.toFixed(2)} % of a core, rss ${(base.rss / 2 ** 20).toFixed(0)} MiB; one host write+delete p50 ${pct(hostWrite, 50).toFixed(0)} ms`,
  );

  const envs: { id: string; namespace: string; student?: CoreV1Api; cpIp: string }[] = [];
  const addEnvs = async (count: number) => {
    const ids = Array.from(
      { length: count },
      (_, i) => `bsync${String(envs.length + i).padStart(3, '0')}`,
    );
    const t0 = Date.now();
    const PARALLEL = 20;
    for (let i = 0; i < ids.length; i += PARALLEL) {
      await Promise.all(
        ids.slice(i, i + PARALLEL).map(async (envId) => {
          await host.createAll(
            await renderEnvironment({
              config,
              flavor: FLAVOR,
              envId,
              orchestratorPublicKey: orchestrator.public,
              secrets,
            }),
          );
        }),
      );
    }
    for (const envId of ids) {
      const namespace = envNamespace(config, envId);
      let cpIp = '';
      await waitFor(
        async () => {
          const vmi = (await host.listVmis(namespace)).find((v) => v.name === 'control-plane');
          cpIp = vmi?.phase === 'Running' && vmi.ip ? vmi.ip : '';
          return cpIp !== '';
        },
        10 * 60_000,
        `${envId} running`,
      );
      await host.patchNamespaceMeta(namespace, {
        labels: { [LABELS.state]: 'active' },
        annotations: { [ANNOTATIONS.session]: `s-${envId}`, [ANNOTATIONS.student]: envId },
      });
      envs.push({ id: envId, namespace, cpIp });
    }
    await waitFor(async () => sync.watchedEnvs >= envs.length, 10 * 60_000, 'all envs watched');
    return (Date.now() - t0) / 1000;
  };

  const latencies = async (n: number) => {
    const out: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const env = envs[Math.floor(Math.random() * n)]!;
      env.student ??= await openStudentApi(
        students,
        { envId: env.id, node: 'control-plane', ip: env.cpIp },
        closers,
      );
      const name = `web${n}x${i}`;
      const t0 = performance.now();
      const svc = await env.student.createNamespacedService({
        namespace: 'default',
        body: { metadata: { name }, spec: { type: 'NodePort', ports: [{ port: 80 }] } },
      });
      const nodePort = svc.spec!.ports![0]!.nodePort!;
      const serviceKey = `${env.namespace}/${mirrorName('default', name, 80, 'TCP')}`;
      const policyKey = `${env.namespace}/port-${nodePort}`;
      await waitFor(
        async () =>
          seen.get(serviceKey)?.service !== undefined && seen.get(policyKey)?.policy !== undefined,
        30_000,
        `mirror of ${name}`,
      );
      out.push(Math.max(seen.get(serviceKey)!.service!, seen.get(policyKey)!.policy!) - t0);
      // Back to idle: the student removes it again (and labvirt its mirror).
      await env.student.deleteNamespacedService({ namespace: 'default', name });
    }
    return out;
  };

  for (const level of LEVELS) {
    const setup = await addEnvs(level - envs.length);
    const lat = await latencies(level);
    await sleep(3000);
    const coreShare = await idleCpu();
    const mem = memory();
    console.log(
      `${level} watched envs (added in ${setup.toFixed(0)} s): mirror latency p50 ${pct(lat, 50).toFixed(0)} ms, p99 ${pct(lat, 99).toFixed(0)} ms (${lat.length} creates); p50 ${(pct(lat, 50) / pct(hostWrite, 50)).toFixed(1)}x one host write+delete`,
    );
    console.log(
      `  idle per watched env (over the 0-env baseline): rss ${((mem.rss - base.rss) / level / 1024).toFixed(1)} KiB, heap ${((mem.heapUsed - base.heapUsed) / level / 1024).toFixed(1)} KiB, CPU ${((coreShare - baseCpu) / level).toFixed(4)} % of a core (total ${coreShare.toFixed(2)} % over ${IDLE_SECONDS} s; rss ${(mem.rss / 2 ** 20).toFixed(0)} MiB)`,
    );
  }
} finally {
  for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => undefined);
  child.kill('SIGINT');
  await new Promise((r) => child.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
