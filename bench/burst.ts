/**
 * A class arriving at once (`npx tsx bench/pool.bench.ts --burst 200`): the
 * simulator, `labvirt serve` and this client in three processes, as in
 * production. The pool is filled with one warm 3-VM env per student, then
 * every student starts a lab through the HTTP API at the same moment.
 * `--replicas 2` runs two `serve` processes on the same Redis and simulator
 * (students alternate between their APIs, as behind one Service);
 * `--line K` fills K envs fewer than there are students, so the last K wait
 * in the line for envs provisioned during the burst, and checks that they
 * are served in the line's order.
 * Reports claim-to-ready (the session's own createdAt → readyAt, which
 * labvirt records), labvirt's CPU per claim (from /proc, the serve process
 * only) and the Kubernetes API writes per claim (labvirt's own counter).
 * The bench watches the sessions turn active by reading labvirt's Redis
 * records itself (src/store, its own connection), so its waiting costs
 * labvirt's process nothing; students' own `labvirt start` long polls are not
 * part of this figure.
 */
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisServer } from '../src/redis/index.js';
import { Store } from '../src/store/index.js';
import {
  FIXTURE_LABS,
  forkLabvirt,
  forkSim,
  type ChildHandle,
  machineLoad,
  pct,
  processCpuMs,
  processTreeCpuMs,
  result,
  printSteps,
  scriptsAddedMs,
  stepLines,
  waitFor,
  writeServeConfig,
} from './lib.js';

const FLAVOR = 'v1.30-3node';
const LAB = 'fixture-three';
const TOKEN = 'bench-token-bench-token-bench';
const REDIS_PREFIX = 'labvirt';

interface SessionJson {
  id: string;
  state: string;
  createdAt: string;
  readyAt?: string;
  claimedAt?: number;
  envId?: string;
}

export interface BurstOptions {
  students: number;
  speed: number;
  /** `serve` processes sharing Redis and the simulator (default 1). */
  replicas?: number;
  /** Students beyond the warm envs, who wait in the line (default 0). */
  line?: number;
  /** Extra `pool` settings for the serve process (e.g. workerConcurrency). */
  pool?: Record<string, unknown>;
}

/** Calls per Redis command so far (INFO commandstats), e.g. `evalsha` → 1200. */
async function redisCalls(redis: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
    calls.set(m[1]!, Number(m[2]));
  return calls;
}

type Api = <T>(path: string, init?: RequestInit) => Promise<T>;

/** `labvirt serve` (its own process), the simulator (its own) and Redis, as a class meets them. */
export interface ServeStack {
  /** The first replica. */
  serve: ChildHandle;
  /** Every replica, the first first. */
  serves: ChildHandle[];
  sim: ChildHandle;
  redisUrl: string;
  /** The bench's own Redis connection (labvirt's records read through src/store). */
  benchRedis: Redis;
  store: Store;
  /** An authenticated call to the first replica's HTTP API under /v1. */
  api: Api;
  /** The same, one a replica. */
  apis: Api[];
  /** labvirt's Kubernetes API writes so far, all replicas together (their own counters, /metrics). */
  writes: () => Promise<number>;
  /** Resolves once `n` envs of the 3-VM flavor are warm. */
  waitWarm: (n: number, timeoutMs: number) => Promise<void>;
  stop: () => Promise<void>;
}

export interface ServeStackOptions {
  speed: number;
  minWarm: number;
  maxTotal: number;
  /** Simulated host nodes (256 GiB each); default room for `maxTotal` envs. */
  simNodes?: number;
  /** Extra `pool` settings for the serve process. */
  pool?: Record<string, unknown>;
  /** labvirt's log levels per module, over `warn` (e.g. `{ orchestrator: 'info' }`). */
  logLevels?: Record<string, string>;
  roles?: string;
  /** `serve` processes on the same Redis and simulator (default 1), each with its own API port. */
  replicas?: number;
  serveExecArgv?: string[];
  /** Node options for the simulator's process (e.g. `--cpu-prof`). */
  simExecArgv?: string[];
}

/** Starts the three processes and waits until serve answers. */
export async function startServeStack(opts: ServeStackOptions): Promise<ServeStack> {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-burst-'));
  const redis = await startRedisServer();
  const benchRedis = new Redis(redis.url, { lazyConnect: true });
  const store = new Store(benchRedis, REDIS_PREFIX);
  let sim: ChildHandle | undefined;
  const serves: ChildHandle[] = [];
  const stop = async () => {
    await Promise.all(serves.map((s) => s.stop()));
    await sim?.stop();
    benchRedis.disconnect();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // A 3-VM env needs about 5.4 GiB with KubeVirt's overhead; 256 GiB nodes.
    const simHandle = await forkSim(join(dir, 'sim'), {
      speed: opts.speed,
      nodes: opts.simNodes ?? Math.ceil((opts.maxTotal * 6) / 256) + 1,
      ...(opts.simExecArgv ? { execArgv: opts.simExecArgv } : {}),
    });
    sim = simHandle;
    const startReplica = async (
      index: number,
    ): Promise<{ served: ChildHandle; api: Api; port: number }> => {
      const configFile = join(dir, index === 0 ? 'labvirt.json' : `labvirt-${index}.json`);
      const apiPort = await writeServeConfig({
        file: configFile,
        dir,
        labsDir: FIXTURE_LABS,
        sim: simHandle,
        redisUrl: redis.url,
        redisPrefix: REDIS_PREFIX,
        ...(opts.logLevels ? { logLevels: opts.logLevels } : {}),
        flavors: {
          [FLAVOR]: {
            kubernetesVersion: '1.30',
            nodes: 3,
            minWarm: opts.minWarm,
            maxTotal: opts.maxTotal,
          },
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 0, maxTotal: 1 },
        },
        // workerConcurrency runs the provisioning of the fill; claims have their own.
        pool: {
          pollSeconds: 0.2,
          maxProvisioning: 50,
          workerConcurrency: 50,
          ...opts.pool,
        },
      });
      const served = forkLabvirt(
        ['--config', configFile, 'serve', ...(opts.roles ? ['--roles', opts.roles] : [])],
        { LABVIRT_API_TOKEN: TOKEN },
        opts.serveExecArgv ?? [],
      );
      serves.push(served);
      const base = `http://127.0.0.1:${apiPort}/v1`;
      const api: Api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
        const res = await fetch(base + path, {
          ...init,
          headers: {
            authorization: `Bearer ${TOKEN}`,
            'content-type': 'application/json',
            ...init.headers,
          },
        });
        if (!res.ok)
          throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${await res.text()}`);
        return (await res.json()) as T;
      };
      await waitFor(
        async () => {
          if (served.child.exitCode !== null) throw new Error(`serve exited: ${served.output()}`);
          return fetch(`http://127.0.0.1:${apiPort}/healthz`).then(
            (r) => r.ok,
            () => false,
          );
        },
        120_000,
        `labvirt serve (replica ${index + 1})`,
        200,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; its output:\n${served.output().slice(-3000)}`);
      });
      return { served, api, port: apiPort };
    };
    // One after the other: the first makes the SSH keys the others then read.
    const replicas: { served: ChildHandle; api: Api; port: number }[] = [];
    for (let i = 0; i < Math.max(1, opts.replicas ?? 1); i++) replicas.push(await startReplica(i));
    const first = replicas[0]!;
    const writes = async (): Promise<number> => {
      let total = 0;
      for (const { port } of replicas) {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        for (const m of (await res.text()).matchAll(
          /^labvirt_kube_requests_total\{([^}]*)\} (\d+)/gm,
        )) {
          if (/verb="(create|patch|delete|update)"/.test(m[1]!)) total += Number(m[2]);
        }
      }
      return total;
    };
    const waitWarm = (n: number, timeoutMs: number) =>
      waitFor(
        async () => {
          // A loaded serve may answer 503 (the pool not readable within 3 s): ask again.
          const pool = await first
            .api<{
              flavors: { flavor: string; counts: Record<string, number> }[];
            }>('/pool')
            .catch(() => ({ flavors: [] }));
          return (pool.flavors.find((f) => f.flavor === FLAVOR)?.counts.warm ?? 0) >= n;
        },
        timeoutMs,
        `${n} warm envs`,
        1000,
      );
    return {
      serve: first.served,
      serves: replicas.map((r) => r.served),
      sim: simHandle,
      redisUrl: redis.url,
      benchRedis,
      store,
      api: first.api,
      apis: replicas.map((r) => r.api),
      writes,
      waitWarm,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export async function runBurst(opts: BurstOptions): Promise<void> {
  const n = opts.students;
  const replicas = Math.max(1, opts.replicas ?? 1);
  const line = Math.min(n, Math.max(0, opts.line ?? 0));
  // The envs warm at the start; the pool may make `line` more (maxTotal n) for those in line.
  const warmEnvs = n - line;
  // BENCH_CPU_PROF=<dir> writes a V8 CPU profile of the serve process there at its exit.
  const profDir = process.env.BENCH_CPU_PROF;
  // BENCH_SERVE_ROLES (e.g. api,workers,gateway,scheduler) leaves parts out,
  // to tell the claim path's own cost from, say, the NodePort sync's.
  const roles = process.env.BENCH_SERVE_ROLES;
  const stack = await startServeStack({
    speed: opts.speed,
    minWarm: warmEnvs,
    maxTotal: n,
    replicas,
    pool: {
      // A profiled process must exit by itself (the bench kills it after 20 s).
      ...(profDir ? { shutdownGraceSeconds: 5 } : {}),
      ...opts.pool,
    },
    ...(roles ? { roles } : {}),
    // The "session active" lines: each claim's steps, for the orchestrator time.
    logLevels: { orchestrator: 'info' },
    serveExecArgv: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
  });
  const { serves, sim, benchRedis, store, apis, writes } = stack;
  const serveCpuMs = () => serves.reduce((sum, s) => sum + processCpuMs(s.child.pid!), 0);
  const output = () => serves.map((s) => s.output()).join('\n');
  const replicasSaid = replicas > 1 ? `, ${replicas} replicas` : '';
  try {
    const fillStart = Date.now();
    await stack.waitWarm(warmEnvs, 20 * 60_000);
    console.log(
      `burst: ${warmEnvs} warm ${FLAVOR} envs filled in ${((Date.now() - fillStart) / 1000).toFixed(1)} s; ${replicas} serve process${replicas > 1 ? 'es' : ''}; ${line} more student${line === 1 ? '' : 's'} than warm envs`,
    );
    // Let the last provisioning work settle before measuring.
    await new Promise((r) => setTimeout(r, 2000));

    // BENCH_REDIS_MONITOR=<file>: every Redis command of the burst, to see whose they are.
    const monitorFile = process.env.BENCH_REDIS_MONITOR;
    const monitor = monitorFile ? await new Redis(stack.redisUrl).monitor() : undefined;
    monitor?.on('monitor', (time: string, args: string[]) =>
      appendFileSync(monitorFile!, `${time} ${args.map((a) => a.slice(0, 80)).join(' ')}\n`),
    );
    const redisCalls0 = await redisCalls(benchRedis);
    const cpu0 = serveCpuMs();
    const simCpu0 = processCpuMs(sim.child.pid!);
    const guestsCpu0 = processTreeCpuMs(sim.child.pid!) - simCpu0;
    const writes0 = await writes();
    const t0 = Date.now();
    // Students alternate between the replicas' APIs, as a Service spreads them.
    const started = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        apis[i % apis.length]!<SessionJson>('/sessions', {
          method: 'POST',
          body: JSON.stringify({ student: `student${i}`, labId: LAB }),
        }),
      ),
    );
    const acceptedMs = Date.now() - t0;
    // The line as Redis holds it once every student has asked, first first.
    const lineOrder = line > 0 ? await store.waitingSessionIds(FLAVOR) : [];
    if (profDir) console.log(`burst: started at ${t0} (epoch ms)`);
    let sessions: SessionJson[] = [];
    const deadline = Date.now() + Number(process.env.BENCH_BURST_TIMEOUT_S ?? 600) * 1000;
    let benchReads = 0;
    let benchReadsHgetall = 0;
    for (;;) {
      const listed = await store.listSessions();
      benchReads++;
      benchReadsHgetall += listed.length;
      sessions = listed.map((s) => ({
        id: s.id,
        state: s.state,
        createdAt: new Date(s.createdAt).toISOString(),
        ...(s.readyAt ? { readyAt: new Date(s.readyAt).toISOString() } : {}),
        ...(s.claimedAt ? { claimedAt: s.claimedAt } : {}),
        ...(s.envId ? { envId: s.envId } : {}),
      }));
      const done = sessions.filter((s) => s.state === 'active' || s.state === 'ended');
      if (done.length >= n) break;
      if (Date.now() > deadline) {
        // Report what a class would see at this point rather than nothing.
        const byState = new Map<string, number>();
        for (const s of sessions) byState.set(s.state, (byState.get(s.state) ?? 0) + 1);
        console.log(
          `burst: gave up waiting after ${((Date.now() - t0) / 1000).toFixed(0)} s: ${[...byState].map(([k, v]) => `${v} ${k}`).join(', ')}`,
        );
        break;
      }
      // Straight from Redis (not through labvirt's API): the latencies come
      // from the sessions' own times, so a short wait only ends the bench sooner.
      await new Promise((r) => setTimeout(r, 250));
    }
    const wallMs = Date.now() - t0;
    // Why students were moved to other envs (serve logs at warn): what a class felt.
    const reasons = new Map<string, number>();
    for (const m of output().matchAll(/"reason":"([^"]{0,80})[^"]*"[^\n]*moving student/g))
      reasons.set(m[1]!, (reasons.get(m[1]!) ?? 0) + 1);
    if (reasons.size > 0)
      console.log(
        `burst: students moved to another env: ${[...reasons].map(([r, k]) => `${k}× ${r}`).join('; ')}`,
      );
    // The NodePort sync's outages during the burst (each ends the watch's pass: a new relay and list).
    const syncOutages = [
      ...output().matchAll(/student API server unreachable; keeping its mirrors/g),
    ].length;
    console.log(`burst: NodePort sync outages logged: ${syncOutages}`);
    // Slow guests: setup steps run again on the same env with more time, and
    // sessions ended because even that was not enough (the lab's problem).
    const slowRetries = [...output().matchAll(/the guest is slow; running it again/g)].length;
    const outOfTime = [...output().matchAll(/lab setup timed out twice/g)].length;
    console.log(
      `burst: setup steps run again on a slow guest: ${slowRetries}; sessions ended as "setup did not finish in time": ${outOfTime}; students moved: ${[...reasons.values()].reduce((a, b) => a + b, 0)}`,
    );
    if (profDir) console.log(`burst: ended at ${Date.now()} (epoch ms)`);
    const cpuMs = serveCpuMs() - cpu0;
    const simCpuMs = processCpuMs(sim.child.pid!) - simCpu0;
    // The guests' own work: the spawner helper and every command it ran.
    const guestsCpuMs =
      processTreeCpuMs(sim.child.pid!) - processCpuMs(sim.child.pid!) - guestsCpu0;
    const claimWrites = (await writes()) - writes0;
    // Every Redis command in the window, the bench's own reads taken out:
    // a count that load does not blur, unlike CPU time.
    const redisCalls1 = await redisCalls(benchRedis);
    monitor?.disconnect();
    const redisByCommand = [...redisCalls1]
      .map(([cmd, calls]) => [cmd, calls - (redisCalls0.get(cmd) ?? 0)] as const)
      .filter(([, calls]) => calls > 0)
      .sort((a, b) => b[1] - a[1]);
    // The bench's own: each listSessions is one SMEMBERS and one HGETALL per
    // session; the first INFO is counted by the second.
    const benchOwn = benchReads + benchReadsHgetall + 1;
    const redisTotal = redisByCommand.reduce((sum, [, calls]) => sum + calls, 0) - benchOwn;
    console.log(
      `burst: Redis commands during the burst, labvirt's: ${(redisTotal / n).toFixed(1)} per claim (all, incl. the bench's reads: ${redisByCommand
        .slice(0, 12)
        .map(([cmd, calls]) => `${cmd} ${(calls / n).toFixed(1)}`)
        .join(', ')})`,
    );
    // The claims of warm envs; students who waited in line are reported apart.
    const waited = new Set(started.filter((s) => s.state === 'waiting').map((s) => s.id));
    const allActive = sessions.filter((s) => s.state === 'active' && s.readyAt);
    const active = allActive.filter((s) => !waited.has(s.id));
    const lost = n - allActive.length;
    const latencies = active.map((s) => Date.parse(s.readyAt!) - Date.parse(s.createdAt));
    if (latencies.length === 0) latencies.push(NaN);
    // What issue #12's target is about: the orchestrator's time, the lab's own
    // scripts taken out (scriptsAddedMs). Every claim's line is waited for.
    await waitFor(
      async () => stepLines(output()).size >= active.length,
      10_000,
      'the step lines',
    ).catch(() => undefined);
    const steps = stepLines(output());
    const orchestrator = active.flatMap((s) => {
      const line = steps.get(s.id);
      const scripts = line && scriptsAddedMs(line.steps);
      return scripts === undefined
        ? []
        : [Date.parse(s.readyAt!) - Date.parse(s.createdAt) - scripts];
    });
    printSteps('burst', steps);
    const envs = new Set(allActive.map((s) => s.envId));
    console.log(
      `burst: ${n} POST /sessions answered in ${acceptedMs} ms; all active after ${wallMs} ms; ${envs.size} distinct envs`,
    );
    console.log(
      `burst: claim-to-ready p50 ${pct(latencies, 50)} ms, p95 ${pct(latencies, 95)} ms, p99 ${pct(latencies, 99)} ms, max ${Math.max(...latencies)} ms`,
    );
    console.log(
      `burst: CPU during the burst: labvirt ${cpuMs.toFixed(0)} ms (${(cpuMs / n).toFixed(1)} ms per claim), simulator ${simCpuMs.toFixed(0)} ms, the simulated guests' commands ${guestsCpuMs.toFixed(0)} ms (${(guestsCpuMs / n).toFixed(1)} ms per claim); wall ${(wallMs / 1000).toFixed(1)} s on ${cpus().length} cores, ${machineLoad()}`,
    );
    // The line: each env that turns warm goes to the first in line, so the
    // students in it get their envs in its order.
    const byId = new Map(sessions.map((s) => [s.id, s]));
    const lineClaims = lineOrder.map((id) => byId.get(id)?.claimedAt);
    let outOfOrder = 0;
    for (let i = 1; i < lineClaims.length; i++) {
      const [before, after] = [lineClaims[i - 1], lineClaims[i]];
      if (before === undefined || after === undefined || after < before) outOfOrder++;
    }
    const lineActive = allActive.filter((s) => waited.has(s.id));
    const lineWaits = lineActive.map((s) => Date.parse(s.readyAt!) - Date.parse(s.createdAt));
    if (line > 0)
      console.log(
        `burst: the line: ${waited.size} students waited (${lineOrder.length} still in it once all had asked); ${lineActive.length} active; envs given out of the line's order: ${outOfOrder}; their wait p50 ${pct(lineWaits, 50)} ms, p99 ${pct(lineWaits, 99)} ms`,
      );
    const lineKept = line === 0 || (outOfOrder === 0 && lineActive.length === waited.size);
    const orchestratorTarget = replicas > 1 ? 1000 : 2000;
    const orchestratorMet =
      orchestrator.length === active.length &&
      pct(orchestrator, 99) <= orchestratorTarget &&
      lost === 0 &&
      lineKept;
    console.log(
      `burst: without the lab's own scripts (claim-to-ready less what they added): p50 ${pct(orchestrator, 50)} ms, p99 ${pct(orchestrator, 99)} ms (${orchestrator.length} of ${active.length} claims' steps read)`,
    );
    result({
      what: `${n}-student burst${replicasSaid}, warm 3-VM claims, claim-to-ready p99`,
      figure: `${pct(latencies, 99)} ms (p50 ${pct(latencies, 50)} ms), ${lost} not active`,
    });
    result({
      what: `${n}-student burst${replicasSaid}, warm 3-VM claims, orchestrator time (less the lab's own scripts) p99`,
      figure: `${pct(orchestrator, 99)} ms (p50 ${pct(orchestrator, 50)} ms), ${lost} not active${line > 0 ? `, ${outOfOrder} of ${lineOrder.length} in line out of order` : ''}`,
      target: `≤ ${orchestratorTarget} ms, none lost${line > 0 ? ', line order kept' : ''}`,
      met: orchestratorMet,
    });
    if (line > 0)
      result({
        what: `${n}-student burst${replicasSaid}: ${line} more than the warm envs wait in line`,
        figure: `${lineActive.length} of ${waited.size} active, ${outOfOrder} served out of the line's order; wait p99 ${pct(lineWaits, 99)} ms`,
        target: 'none lost, line order kept',
        met: lineKept,
      });
    result({
      what: `labvirt CPU per claim (${n}-student burst${replicasSaid}${line > 0 ? `, the line's ${line} provisionings included` : ''})`,
      figure: `${(cpuMs / n).toFixed(1)} ms (simulator ${(simCpuMs / n).toFixed(1)} ms, its guests' commands ${(guestsCpuMs / n).toFixed(1)} ms)`,
      target: '≤ 5 ms',
      met: cpuMs / n <= 5,
    });
    result({
      what: `API writes per claim (${n}-student burst${replicasSaid})`,
      figure: (claimWrites / n).toFixed(1),
    });
    result({
      what: `Redis commands per claim (${n}-student burst${replicasSaid})`,
      figure: (redisTotal / n).toFixed(1),
    });
  } finally {
    await Promise.all(serves.map((s) => s.stop()));
    if (profDir) console.log(`burst: serve stopped at ${Date.now()} (epoch ms)`);
    await stack.stop();
  }
}
