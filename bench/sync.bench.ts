/**
 * NodePort sync benchmark (run: `node --expose-gc --import tsx bench/sync.bench.ts`).
 * Three processes, so that what is measured is labvirt's NodePort sync alone:
 *  - the simulator (`labvirt sim`, a child process);
 *  - a driver (this file with `--driver`, a child process) that plays the
 *    pool and the students: it creates the envs and marks them active, and
 *    for each latency sample a student creates a NodePort Service in a
 *    random watched env (client-node through an SSH tunnel, as a student's
 *    kubectl would go) and the driver times it until the host mirror Service
 *    and its NetworkPolicy both exist (seen by its host watches);
 *  - this process, labvirt: one NodePortSync with its real SSH executor and
 *    host client, watching every active env's student cluster over SSH, and
 *    nothing else; its RSS, heap and CPU are what is measured.
 * Envs are added in steps (BENCH_LEVELS, default "1,100,1000"); at each step:
 *  - mirror latency p50/p99/max over BENCH_SAMPLES creates (default 30), as
 *    a ratio to one host Service write+delete (the floor, same run) and to
 *    the first step's;
 *  - idle cost per watched env: labvirt's RSS and heap over the 0-env
 *    baseline (after a GC when --expose-gc is given) divided by the envs,
 *    and CPU over BENCH_IDLE_SECONDS (default 30) of idle watching minus the
 *    baseline's, divided by the envs, as a share of one core; and the same
 *    per env added since the previous step (the marginal cost).
 * BENCH_HEAP_SNAPSHOT=<file> writes a heap snapshot of labvirt after the last step.
 * The sync's watchdog relist runs about every `sync.resyncSeconds` (default
 * 300); BENCH_RESYNC overrides it (an idle window longer than it includes
 * relists). Lighter than production in one way: every env shares one CA
 * (generating 1,000 RSA CAs would take the bench's whole time budget, and
 * the CA does not change what the sync does).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
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
import { createExecutor, fileResolver } from '../src/ssh/index.js';
import { NodePortSync, SYNC_LABELS, mirrorName } from '../src/sync/index.js';
import { openStudentApi } from '../test/helpers/student-envs.js';
import { result } from './lib.js';

const LEVELS = (process.env.BENCH_LEVELS ?? '1,100,1000').split(',').map(Number);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 30);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const RESYNC = process.env.BENCH_RESYNC ? Number(process.env.BENCH_RESYNC) : undefined;
const MAX = Math.max(...LEVELS);
const FLAVOR = 'v1.30-1node';

type ToDriver =
  { op: 'add'; count: number } | { op: 'latency'; envs: number; samples: number } | { op: 'floor' };
type FromDriver =
  | { op: 'ready'; privateKey: string }
  | { op: 'added'; seconds: number }
  | { op: 'latency'; ms: number[] }
  | { op: 'floor'; ms: number[] };

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
const benchConfig = () =>
  loadConfig({
    env: {},
    overrides: {
      flavors: { [FLAVOR]: { kubernetesVersion: '1.30', nodes: 1, minWarm: 0, maxTotal: MAX } },
      ...(RESYNC ? { sync: { resyncSeconds: RESYNC } } : {}),
    },
  });

if (process.argv[2] === '--driver') await driver(process.argv[3]!);
else await labvirt();

/** The pool and the students, in a process of their own. */
async function driver(simDir: string): Promise<void> {
  const send = (m: FromDriver) => process.send!(m);
  const config = benchConfig();
  const kc = new KubeConfig();
  kc.loadFromFile(join(simDir, 'kubeconfig'));
  const host = new HostCluster(kc, { logger: silentLogger() });
  // One set of secrets for every env (key generation is not what is measured):
  // the envs share one login key, and their host keys are pinned on first use.
  const secrets = await generateEnvSecrets();
  const orchestrator = { private: secrets.sshKey.privateKey };
  const students = createExecutor({
    privateKey: orchestrator.private,
    resolve: fileResolver(join(simDir, 'guests.json')),
  });
  const closers: (() => void | Promise<void>)[] = [() => students.close()];

  // Mirror arrival times, from one host watch per kind.
  const seen = new Map<string, { service?: number; policy?: number }>();
  const mark = (key: string, what: 'service' | 'policy') => {
    const s = seen.get(key) ?? {};
    s[what] ??= performance.now();
    seen.set(key, s);
  };
  // Watches end (client-side timeout): start them again until the bench is over.
  const keepWatching = (
    path: string,
    query: Record<string, string>,
    cb: Parameters<Watch['watch']>[2],
  ) => {
    const start = () => {
      new Watch(kc)
        .watch(path, query, cb, () => setTimeout(start, 10))
        .catch(() => setTimeout(start, 500));
    };
    start();
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

  const envs: { id: string; namespace: string; student?: CoreV1Api; cpIp: string }[] = [];
  const addEnvs = async (count: number) => {
    const ids = Array.from(
      { length: count },
      (_, i) => `bsync${String(envs.length + i).padStart(4, '0')}`,
    );
    const t0 = Date.now();
    const PARALLEL = 10;
    for (let i = 0; i < ids.length; i += PARALLEL) {
      await Promise.all(
        ids.slice(i, i + PARALLEL).map(async (envId) => {
          const objects = await renderEnvironment({
            config,
            flavor: FLAVOR,
            envId,
            secrets,
          });
          // A simulator busy with hundreds of envs may drop a connection: createAll is idempotent.
          for (let attempt = 1; ; attempt++) {
            try {
              await host.createAll(objects);
              break;
            } catch (err) {
              if (attempt >= 5) throw err;
              await sleep(2000 * attempt);
            }
          }
        }),
      );
    }
    for (const envId of ids) {
      const namespace = envNamespace(config, envId);
      let cpIp = '';
      await waitFor(
        async () => {
          const vmi = (await host.listVmis(namespace)).find((v) => v.name === 'control-plane');
          const ip =
            vmi?.phase === 'Running' && vmi.uid
              ? (await host.launcherAddresses(namespace)).get(vmi.uid)
              : undefined;
          cpIp = ip ?? '';
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
    return (Date.now() - t0) / 1000;
  };

  const latencies = async (n: number, samples: number) => {
    const out: number[] = [];
    for (let i = 0; i < samples; i++) {
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
        60_000,
        `mirror of ${name}`,
      );
      out.push(Math.max(seen.get(serviceKey)!.service!, seen.get(policyKey)!.policy!) - t0);
      // Back to idle: the student removes it again (and labvirt its mirror).
      await env.student.deleteNamespacedService({ namespace: 'default', name });
    }
    return out;
  };

  // The floor a mirror cannot beat: one host write of a Service and its deletion.
  const floor = async () => {
    const ms: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await host.core.createNamespacedService({
        namespace: 'default',
        body: {
          metadata: { name: `floor${i}` },
          spec: { type: 'NodePort', ports: [{ port: 80 }] },
        },
      });
      await host.core.deleteNamespacedService({ namespace: 'default', name: `floor${i}` });
      ms.push(performance.now() - t0);
    }
    return ms;
  };

  process.on('message', (m: ToDriver) => {
    void (async () => {
      if (m.op === 'add') send({ op: 'added', seconds: await addEnvs(m.count) });
      else if (m.op === 'latency') send({ op: 'latency', ms: await latencies(m.envs, m.samples) });
      else send({ op: 'floor', ms: await floor() });
    })().catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  });
  process.once('disconnect', () => {
    void Promise.all(closers.map((c) => Promise.resolve(c()).catch(() => undefined))).finally(() =>
      process.exit(0),
    );
  });
  send({ op: 'ready', privateKey: orchestrator.private });
}

/** labvirt's side: the NodePort sync and nothing else; measured. */
async function labvirt(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const memory = () => {
    gc?.();
    return process.memoryUsage();
  };
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-sync-'));
  const simDir = join(dir, 'sim');
  const children: ChildProcess[] = [];
  // Never leave a child behind, whatever ends this process.
  process.once('exit', () => children.forEach((c) => c.kill('SIGKILL')));
  const sim = fork(
    join(import.meta.dirname, '..', 'bin', 'labvirt.js'),
    // A 1-node env takes about 1.8 GiB of a node with KubeVirt's overhead.
    ['sim', '--dir', simDir, '--speed', '1000', '--nodes', String(Math.ceil((MAX * 2) / 256) + 1)],
    {
      env: { ...process.env, LABVIRT_FROM_SOURCE: '1' },
      execArgv: [],
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    },
  );
  children.push(sim);
  let simOut = '';
  sim.stdout!.on('data', (d: Buffer) => (simOut += d.toString()));
  const closers: (() => void | Promise<void>)[] = [];
  try {
    await waitFor(async () => /kubeconfig/i.test(simOut), 300_000, 'simulator start');
    const drv = fork(import.meta.filename, ['--driver', simDir], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(drv);
    const replies: FromDriver[] = [];
    drv.on('message', (m: FromDriver) => replies.push(m));
    drv.once('exit', (code) => code && console.error(`driver exited with ${code}`));
    const ask = async <K extends FromDriver['op']>(
      request: ToDriver | undefined,
      op: K,
    ): Promise<Extract<FromDriver, { op: K }>> => {
      if (request) drv.send(request);
      await waitFor(async () => replies.some((r) => r.op === op), 60 * 60_000, `driver ${op}`);
      const i = replies.findIndex((r) => r.op === op);
      return replies.splice(i, 1)[0] as Extract<FromDriver, { op: K }>;
    };
    const { privateKey } = await ask(undefined, 'ready');

    const config = benchConfig();
    const kc = new KubeConfig();
    kc.loadFromFile(join(simDir, 'kubeconfig'));
    const host = new HostCluster(kc, { logger: silentLogger() });
    const executor = createExecutor({
      privateKey,
      resolve: fileResolver(join(simDir, 'guests.json')),
    });
    closers.push(() => executor.close());
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
    // The baseline: the sync watching the host with no env active.
    const baseCpu = await idleCpu();
    const base = memory();
    const hostWrite = (await ask({ op: 'floor' }, 'floor')).ms;
    console.log(
      `baseline (0 envs): labvirt idle CPU ${baseCpu.toFixed(2)} % of a core, rss ${(base.rss / 2 ** 20).toFixed(0)} MiB, heap ${(base.heapUsed / 2 ** 20).toFixed(0)} MiB; one host write+delete p50 ${pct(hostWrite, 50).toFixed(0)} ms (sync.resyncSeconds ${config.sync.resyncSeconds})`,
    );

    let watched = 0;
    let first: { level: number; p50: number; p99: number } | undefined;
    let previous: { level: number; rss: number; heap: number; cpu: number } | undefined;
    let last:
      | {
          level: number;
          p50: number;
          p99: number;
          costOver: string;
          rssKiB: number;
          heapKiB: number;
          cpu: number;
        }
      | undefined;
    for (const level of LEVELS) {
      const { seconds } = await ask({ op: 'add', count: level - watched }, 'added');
      watched = level;
      await waitFor(async () => sync.watchedEnvs >= level, 10 * 60_000, 'all envs watched');
      const lat = (await ask({ op: 'latency', envs: level, samples: SAMPLES }, 'latency')).ms;
      await sleep(3000);
      const coreShare = await idleCpu();
      const mem = memory();
      const p50 = pct(lat, 50);
      const p99 = pct(lat, 99);
      first ??= { level, p50, p99 };
      const slow = lat.filter((ms) => ms > 1000).length;
      console.log(
        `${level} watched envs (added in ${seconds.toFixed(0)} s): mirror latency p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${Math.max(...lat).toFixed(0)} ms, ${slow} of ${lat.length} over 1 s; p50 ${(p50 / pct(hostWrite, 50)).toFixed(1)}x one host write+delete; p50 ${(p50 / first.p50).toFixed(2)}x, p99 ${(p99 / first.p99).toFixed(2)}x the ${first.level}-env step`,
      );
      console.log(
        `  idle per watched env (over the 0-env baseline): rss ${((mem.rss - base.rss) / level / 1024).toFixed(1)} KiB, heap ${((mem.heapUsed - base.heapUsed) / level / 1024).toFixed(1)} KiB, CPU ${((coreShare - baseCpu) / level).toFixed(4)} % of a core (total ${coreShare.toFixed(2)} % over ${IDLE_SECONDS} s; rss ${(mem.rss / 2 ** 20).toFixed(0)} MiB; ${executor.openConnections} SSH connections)`,
      );
      last = {
        level,
        p50,
        p99,
        costOver: 'over the 0-env baseline',
        rssKiB: (mem.rss - base.rss) / level / 1024,
        heapKiB: (mem.heapUsed - base.heapUsed) / level / 1024,
        cpu: (coreShare - baseCpu) / level,
      };
      // The marginal cost: what each env added since the previous step (the first env's start-up costs excluded).
      if (previous) {
        const added = level - previous.level;
        last = {
          ...last,
          costOver: `marginal, ${previous.level}→${level} envs`,
          rssKiB: (mem.rss - previous.rss) / added / 1024,
          heapKiB: (mem.heapUsed - previous.heap) / added / 1024,
          cpu: (coreShare - previous.cpu) / added,
        };
        console.log(
          `  per env added since the ${previous.level}-env step: rss ${last.rssKiB.toFixed(1)} KiB, heap ${last.heapKiB.toFixed(1)} KiB, CPU ${last.cpu.toFixed(4)} % of a core`,
        );
      }
      previous = { level, rss: mem.rss, heap: mem.heapUsed, cpu: coreShare };
    }
    // The goals, judged at the last step (the marginal cost when there are two steps).
    if (last) {
      const envsTag = `${last.level} watched envs`;
      result({
        what: `sync: mirror latency p99, ${envsTag}`,
        figure: `${last.p99.toFixed(0)} ms (p50 ${last.p50.toFixed(0)} ms)`,
        target: '< 1000 ms at 1,000 envs',
        met: last.level >= 1000 ? last.p99 < 1000 : undefined,
      });
      result({
        what: `sync: labvirt RSS per idle watched env, ${last.costOver}`,
        figure: `${last.rssKiB.toFixed(0)} KiB (heap ${last.heapKiB.toFixed(0)} KiB)`,
        target: '< 100 KiB',
        met: last.rssKiB < 100,
      });
      result({
        what: `sync: labvirt CPU per idle watched env, ${last.costOver}`,
        figure: `${last.cpu.toFixed(4)} % of a core`,
        target: '< 0.05 %',
        met: last.cpu < 0.05,
      });
    }
    // Where the heap goes (open in Chrome DevTools): BENCH_HEAP_SNAPSHOT=file.heapsnapshot.
    if (process.env.BENCH_HEAP_SNAPSHOT) writeHeapSnapshot(process.env.BENCH_HEAP_SNAPSHOT);
  } finally {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => undefined);
    for (const c of children) {
      if (c.exitCode !== null) continue;
      c.kill('SIGINT');
      await new Promise((r) => c.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
