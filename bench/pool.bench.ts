/**
 * Pool benchmark (run: `npx tsx bench/pool.bench.ts [--burst N]`): real redis-server, the
 * simulated KubeVirt cluster (same boot delays for both arms), labvirt's real
 * workers. Prints, in one run:
 *  - claim-to-ready latency from a warm pool vs. cold provisioning (p50/p95/p99
 *    and their ratio — ratios, not absolute times, are what compare across
 *    machines);
 *  - Kubernetes API requests per environment lifecycle (provision → claim →
 *    release → deleted);
 *  - labvirt's CPU and memory while holding many warm envs (the simulator runs
 *    in a child process so its cost is not counted).
 * Environment: BENCH_SESSIONS (default 20), BENCH_HOLD_ENVS (default 300),
 * BENCH_SPEED (simulator speed factor, default 20). Envs are of the 3-VM
 * flavor (BENCH_NODES=1 for the 1-VM one).
 * `--burst N` instead measures N students claiming warm envs at once with the
 * simulator and `labvirt serve` in their own processes (see burst.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevStack } from '../src/app/dev.js';
import { startLabvirt } from '../src/app/index.js';
import { loadConfig } from '../src/config/index.js';
import { silentLogger } from '../src/log/index.js';
import { startRedisServer } from '../src/redis/index.js';
import { fileResolver } from '../src/ssh/index.js';
import { runBurst } from './burst.js';
import { FIXTURE_LABS, forkSim, pct, result, waitFor } from './lib.js';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);
const HOLD = Number(process.env.BENCH_HOLD_ENVS ?? 300);
const SPEED = Number(process.env.BENCH_SPEED ?? 20);
const NODES = Number(process.env.BENCH_NODES ?? 3);
const LABS = FIXTURE_LABS;
const FLAVOR = `v1.30-${NODES}node`;
const OTHER_FLAVOR = NODES === 3 ? 'v1.30-1node' : 'v1.30-3node';
const LAB = NODES === 3 ? 'fixture-three' : 'fixture-one';
const burstArg = process.argv.indexOf('--burst');

async function claimLatencies(minWarm: number): Promise<{
  latencies: number[];
  requestsPerEnv: number;
  writesPerEnv: number;
  pollingReads: number;
  breakdown: string;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-'));
  let requests = 0;
  const stack = await startDevStack({
    dir,
    sim: { speed: SPEED },
    roles: { api: false, gateway: false, scheduler: false },
    overrides: {
      labsDir: LABS,
      flavors: {
        [FLAVOR]: {
          kubernetesVersion: '1.30',
          nodes: NODES,
          minWarm,
          // Warm: no room to replenish, so the claims are measured alone
          // (not against the boot of their replacements in the same process).
          maxTotal: minWarm > 0 ? minWarm : SESSIONS + 5,
        },
        [OTHER_FLAVOR]: {
          kubernetesVersion: '1.30',
          nodes: 4 - NODES,
          minWarm: 0,
          maxTotal: 1,
        },
      },
      pool: {
        pollSeconds: 0.05,
        maxProvisioning: SESSIONS + minWarm,
        workerConcurrency: SESSIONS + minWarm,
      },
    },
  });
  const { labvirt } = stack;
  const byCall = new Map<string, number>();
  labvirt.context.cluster.onRequest((verb, resource) => {
    requests++;
    byCall.set(`${verb} ${resource}`, (byCall.get(`${verb} ${resource}`) ?? 0) + 1);
  });
  try {
    await labvirt.runMaintenance('replenish');
    await waitFor(
      async () => ((await labvirt.store.countByState(FLAVOR)).warm ?? 0) >= minWarm,
      300_000,
      'warm pool',
    );
    requests = 0;
    byCall.clear();
    // Waits on labvirt's own event, not on status reads: the bench's waiting
    // makes no API request of its own, so every request counted is labvirt's.
    const readyAt = new Map<string, number>();
    const offReady = labvirt.events.on('session.ready', (e) => {
      readyAt.set(e.sessionId, Date.now());
    });
    const latencies = await Promise.all(
      Array.from({ length: SESSIONS }, async (_, i) => {
        const started = Date.now();
        // start() itself asks for a replenish (a queued, deduplicated job).
        const s = await labvirt.service.start({ student: `bench${i}`, labId: LAB });
        await waitFor(async () => readyAt.has(s.id), 300_000, `session ${s.id}`);
        return readyAt.get(s.id)! - started;
      }),
    );
    offReady();
    // Release everything and wait until the envs are gone: a whole lifecycle.
    for (const s of await labvirt.service.list()) await labvirt.service.stop(s.id);
    await waitFor(
      async () =>
        ((await labvirt.store.countByState(FLAVOR)).releasing ?? 0) === 0 &&
        (await labvirt.store.listEnvs({ flavor: FLAVOR })).every(
          (e) => e.state === 'warm' || e.state === 'provisioning' || e.state === 'booting',
        ),
      300_000,
      'teardown',
    );
    const breakdown = [...byCall]
      .sort((x, y) => y[1] - x[1])
      .map(([call, n]) => `${call} ${(n / SESSIONS).toFixed(1)}`)
      .join(', ');
    const writes = [...byCall]
      .filter(([call]) => /^(create|patch|delete|update) /.test(call))
      .reduce((sum, [, count]) => sum + count, 0);
    // Reads that only wait for something to change (VMI status, namespace
    // gone): VMI lists beyond the shared watch's own (re)lists and each
    // claim's one look at where its nodes run, and Namespace reads beyond the
    // three one-off looks per env (provisioning's check for an earlier
    // attempt, the Event recorder's uid lookup, teardown's look before it
    // deletes).
    const calls = (call: string) => byCall.get(call) ?? 0;
    const polls =
      Math.max(
        0,
        calls('list VirtualMachineInstance') -
          labvirt.context.cluster.vmis().relistCount -
          SESSIONS,
      ) + Math.max(0, calls('get Namespace') - 3 * SESSIONS);
    return {
      latencies,
      requestsPerEnv: requests / SESSIONS,
      writesPerEnv: writes / SESSIONS,
      pollingReads: polls / SESSIONS,
      breakdown,
    };
  } finally {
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function holdEnvs(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-hold-'));
  const redis = await startRedisServer();
  // Room for every env: a VM takes about 1.8 GiB with KubeVirt's overhead.
  const sim = await forkSim(join(dir, 'sim'), {
    speed: SPEED,
    nodes: Math.ceil((HOLD * NODES * 2) / 256) + 1,
  });
  const config = loadConfig({
    env: {},
    overrides: {
      labsDir: LABS,
      labScripts: 'sim',
      kube: {
        kubeconfig: sim.kubeconfig,
        guestAddressMap: sim.guestMap,
      },
      redis: { url: redis.url },
      flavors: {
        [FLAVOR]: { kubernetesVersion: '1.30', nodes: NODES, minWarm: HOLD, maxTotal: HOLD },
        [OTHER_FLAVOR]: { kubernetesVersion: '1.30', nodes: 4 - NODES, minWarm: 0, maxTotal: 1 },
      },
      pool: { pollSeconds: 0.5, maxProvisioning: 50, workerConcurrency: 50 },
      ssh: {
        hostKey: join(dir, 'hk'),
        orchestratorKey: join(dir, 'ok'),
        gatewayPort: 0,
        bindAddress: '127.0.0.1',
      },
      api: { port: 0 },
    },
  });
  const handle = await startLabvirt({
    config,
    logger: silentLogger(),
    apiToken: 'bench-token-bench-token',
    resolver: fileResolver(config.kube.guestAddressMap!),
    roles: { scheduler: false },
  });
  try {
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const t0 = Date.now();
    await handle.runMaintenance('replenish');
    await waitFor(
      async () => ((await handle.store.countByState(FLAVOR)).warm ?? 0) >= HOLD,
      30 * 60_000,
      `${HOLD} warm envs`,
    );
    const fillMs = Date.now() - t0;
    // Hold them for a while with the periodic work running, and measure.
    const cpu0 = process.cpuUsage();
    const wall0 = Date.now();
    for (let i = 0; i < 10; i++) {
      await handle.runMaintenance('replenish');
      await handle.runMaintenance('expire');
      await handle.runMaintenance('reconcile');
      await new Promise((r) => setTimeout(r, 500));
    }
    const cpu = process.cpuUsage(cpu0);
    const wall = Date.now() - wall0;
    global.gc?.();
    const mem = process.memoryUsage();
    console.log(`hold: ${HOLD} warm envs filled in ${(fillMs / 1000).toFixed(1)} s`);
    console.log(
      `hold: labvirt CPU while holding (10 rounds of replenish+expire+reconcile over ${(wall / 1000).toFixed(1)} s): ${(((cpu.user + cpu.system) / 1000 / wall) * 100).toFixed(1)}% of one core`,
    );
    console.log(
      `hold: labvirt memory: rss ${(mem.rss / 2 ** 20).toFixed(0)} MiB, heap used ${(mem.heapUsed / 2 ** 20).toFixed(0)} MiB (${(mem.heapUsed / HOLD / 1024).toFixed(1)} KiB per env)`,
    );
    // Below 100 envs the per-env slope is lost in the process's own noise.
    const perEnv = (mem.rss - rssBefore) / HOLD;
    const at1000 = (rssBefore + perEnv * 1000) / 2 ** 20;
    const measured = `${(mem.rss / 2 ** 20).toFixed(0)} MiB at ${HOLD} envs (${(rssBefore / 2 ** 20).toFixed(0)} MiB before filling)`;
    result(
      HOLD >= 100
        ? {
            what: `RSS holding 1,000 warm ${NODES}-VM envs (${HOLD} measured, the rest by the per-env slope)`,
            figure: `${at1000.toFixed(0)} MiB; ${measured}, ${(perEnv / 1024).toFixed(0)} KiB per env`,
            target: '< 300 MiB',
            met: at1000 < 300,
          }
        : { what: `RSS holding ${HOLD} warm ${NODES}-VM envs`, figure: measured },
    );
  } finally {
    await handle.stop();
    await sim.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (burstArg > 0) {
  await runBurst({
    students: Number(process.argv[burstArg + 1] ?? 200),
    speed: SPEED,
  });
  process.exit(0);
}

const warm = await claimLatencies(SESSIONS);
const cold = await claimLatencies(0);
for (const [name, r] of [
  ['warm pool', warm],
  ['cold provisioning', cold],
] as const) {
  console.log(
    `claim-to-ready (${name}, ${SESSIONS} sessions): p50 ${pct(r.latencies, 50)} ms, p95 ${pct(r.latencies, 95)} ms, p99 ${pct(r.latencies, 99)} ms`,
  );
}
console.log(
  `ratio cold/warm: p50 ${(pct(cold.latencies, 50) / pct(warm.latencies, 50)).toFixed(1)}x, p95 ${(pct(cold.latencies, 95) / pct(warm.latencies, 95)).toFixed(1)}x`,
);
console.log(
  `kube API requests per env lifecycle (cold: provision → claim → release → deleted): ${cold.requestsPerEnv.toFixed(1)} (${cold.breakdown})`,
);
result({
  what: `single warm claim, ${NODES}-VM env (${SESSIONS} at once, in-process)`,
  figure: `p99 ${pct(warm.latencies, 99)} ms (p50 ${pct(warm.latencies, 50)} ms)`,
  target: 'p99 ≤ 300 ms',
  met: pct(warm.latencies, 99) <= 300,
});
result({
  what: `cold ÷ warm claim-to-ready, speed ${SPEED}`,
  figure: `p50 ${(pct(cold.latencies, 50) / pct(warm.latencies, 50)).toFixed(1)}×`,
  target: '≥ 50× (at a 200 burst)',
  met: pct(cold.latencies, 50) / pct(warm.latencies, 50) >= 50,
});
result({
  what: `API writes per ${NODES}-VM lifecycle`,
  figure: `${cold.writesPerEnv.toFixed(1)} writes, ${cold.pollingReads.toFixed(1)} polling reads`,
  target: '≤ 12 writes, 0 polling reads',
  met: cold.writesPerEnv <= 12 && cold.pollingReads === 0,
});
console.log(
  `kube API requests per claim from a warm pool (claim → release → deleted): ${warm.requestsPerEnv.toFixed(1)} (${warm.breakdown})`,
);
// BENCH_HOLD_ENVS=0: the claim and write figures only.
if (HOLD > 0) await holdEnvs();
process.exit(0);
