/**
 * Web terminal benchmark (run: `npx tsx bench/web-terminal.bench.ts`), loopback only:
 * BENCH_SESSIONS (default 200) web terminals and as many plain SSH shells
 * open at once, each typing BENCH_KEYS (default 40) keystrokes one after
 * another; the figure is the keystroke → echo latency, p50/p99, through the
 * web bridge (WebSocket → labvirt → SSH gateway → guest) against the same
 * through plain SSH to the gateway, and their ratio (goal: within 1.2×).
 * The clients (ssh2 shells, WebSockets) run in a process of their own
 * (bench/web-terminal-typists.ts), as students' clients do not run in
 * labvirt's event loop; this process holds labvirt's side (gateway, web
 * front end) and the sim guests' SSH servers.
 * The two kinds type in alternating rounds (BENCH_ROUNDS, default 8: all
 * web terminals, then all SSH shells, then the other way round…), so a
 * change in the machine's load during the run weighs on both alike.
 * Two ratios are printed: over all keystrokes of each kind (pooled), and
 * the median of the per-round ratios (each round's web percentile ÷ the
 * same round's SSH percentile), which one round hit by a stall of the
 * machine cannot move. The goal is met when both are within 1.2×.
 * In alternating rounds it also prints where a keystroke's time went (to
 * the gateway, the guest's round trip, back to the client: from the
 * gateway's TERMINAL_BYTES_CHANNEL), the CPU per keystroke on each side,
 * and the GC pauses and event loop delay of this process while each kind
 * typed.
 * Both are plain shells (the web terminal's tmux is off): the figure is the
 * transport's cost.
 * BENCH_WITH_TCP_BRIDGE=1 adds a third kind in the same rounds: web
 * terminals whose bridge reaches the gateway over TCP (as a replica without
 * a gateway of its own does), for a before/after in one run.
 * BENCH_TOGETHER=1 has every kind type at the same time in each round (all
 * 200 web terminals and all 200 SSH shells at once), so that the machine's
 * load at any moment weighs on both alike.
 * Environment: BENCH_SESSIONS, BENCH_KEYS, BENCH_ROUNDS, BENCH_ENVS (default 20),
 * BENCH_PARALLEL (terminals opening at once, 50), BENCH_WITH_TCP_BRIDGE, BENCH_TOGETHER.
 */
import { fork } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import {
  constants as perfConstants,
  monitorEventLoopDelay,
  PerformanceObserver,
} from 'node:perf_hooks';
import Fastify from 'fastify';
import { silentLogger } from '../src/log/index.js';
import type { LabvirtService, SessionView } from '../src/sessions/types.js';
import {
  createExecutor,
  startGateway,
  TERMINAL_BYTES_CHANNEL,
  type GatewaySession,
  type TerminalBytes,
} from '../src/ssh/index.js';
import {
  createWebFrontEnd,
  issueSignInToken,
  withBridgeKey,
  type SingleUseTokens,
} from '../src/web/index.js';
import { GuestFarm, newKey } from '../test/sim-guest/fixtures.js';
import { machineLoad, pct, result } from './lib.js';
import type { Answer, Keystroke, Order } from './web-terminal-typists.js';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
// 20 a terminal per round: with 5, a round of 1,000 keystrokes lasted 0.15–0.3 s on a fast
// machine, and one stall in it decided the pooled p99 (docs/web.md, 2026-12-08).
const KEYS = Number(process.env.BENCH_KEYS ?? 160);
const ENVS = Number(process.env.BENCH_ENVS ?? 20);
const ROUNDS = Math.max(1, Math.min(KEYS, Number(process.env.BENCH_ROUNDS ?? 8)));
/** Also time web terminals whose bridge reaches the gateway over TCP (an API-only replica; the bridge before the in-process hand-off). */
const WITH_TCP_BRIDGE = process.env.BENCH_WITH_TCP_BRIDGE === '1';
/**
 * Every kind types at the same time in each round, instead of one kind after
 * the other: a change in the machine's load (other processes) then weighs
 * on both kinds within the same milliseconds, not only within the same run.
 */
const TOGETHER = process.env.BENCH_TOGETHER === '1';

/** Milliseconds since the epoch at the monotonic clock's resolution, as the typists' process reads it. */
const sharedClock = () => performance.timeOrigin + performance.now();

/**
 * Where one keystroke's echo spent its time, from the gateway's byte counts
 * (see TERMINAL_BYTES_CHANNEL): `toGateway` from the client's write until the
 * gateway has the byte (client framing, socket, SSH decryption or WebSocket
 * parsing, the bridge), `guest` from there until the guest's echo is back at
 * the gateway (the hop, the guest's SSH server, the shell), `toClient` from
 * there until the client has it. The clients' clock and this process's are
 * the same system clock, each read from its own process.
 */
interface Legs {
  toGateway: number;
  guest: number;
  toClient: number;
}
const LEGS = ['toGateway', 'guest', 'toClient'] as const;

/** The gateway's byte counts per session, while a kind types (one kind at a time: a session id names one terminal). */
const gatewayBytes = new Map<string, { at: number; direction: TerminalBytes['direction'] }[]>();
let tracing = false;
subscribe(TERMINAL_BYTES_CHANNEL, (message) => {
  if (!tracing) return;
  const m = message as TerminalBytes;
  let seen = gatewayBytes.get(m.sessionId);
  if (!seen) gatewayBytes.set(m.sessionId, (seen = []));
  seen.push({ at: sharedClock(), direction: m.direction });
});

/** Each keystroke's legs: the first student byte at the gateway after it was typed, then the first guest byte after that. */
function legsOf(keystrokes: Keystroke[]): Legs[] {
  const out: Legs[] = [];
  const bySession = new Map<string, Keystroke[]>();
  for (const k of keystrokes) {
    const ks = bySession.get(k.sessionId);
    if (ks) ks.push(k);
    else bySession.set(k.sessionId, [k]);
  }
  for (const [sessionId, ks] of bySession) {
    const seen = gatewayBytes.get(sessionId) ?? [];
    let i = 0;
    for (const k of ks.sort((a, b) => a.typed - b.typed)) {
      while (i < seen.length && (seen[i]!.direction !== 'in' || seen[i]!.at < k.typed)) i++;
      const atGateway = seen[i]?.at;
      while (i < seen.length && seen[i]!.direction !== 'out') i++;
      const echoAtGateway = seen[i]?.at;
      if (atGateway === undefined || echoAtGateway === undefined || echoAtGateway > k.echoed)
        continue;
      out.push({
        toGateway: atGateway - k.typed,
        guest: echoAtGateway - atGateway,
        toClient: k.echoed - echoAtGateway,
      });
    }
  }
  return out;
}

/** The median of some numbers. */
function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Garbage collection pauses of this process, by when they started. */
const gcPauses: { start: number; ms: number; major: boolean }[] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as { detail?: { kind?: number } }).detail?.kind;
    gcPauses.push({
      start: e.startTime,
      ms: e.duration,
      major: kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR,
    });
  }
});

/** The clients' process (bench/web-terminal-typists.ts): one order at a time, its answer. */
async function startTypists(): Promise<{ ask(order: Order): Promise<Answer>; stop(): void }> {
  const child = fork(join(import.meta.dirname, 'web-terminal-typists.ts'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const answers: ((a: Answer) => void)[] = [];
  let exited: Error | undefined;
  child.on('message', (a: Answer) => answers.shift()?.(a));
  child.once('exit', (code) => {
    exited = new Error(`the typists' process exited (${code})`);
    for (const waiter of answers.splice(0)) waiter({ op: 'failed', message: exited.message });
  });
  const next = () =>
    new Promise<Answer>((resolve) =>
      exited ? resolve({ op: 'failed', message: exited.message }) : answers.push(resolve),
    );
  const first = await next();
  if (first.op === 'failed') throw new Error(first.message);
  return {
    ask: async (order) => {
      const answer = next();
      child.send(order);
      const a = await answer;
      if (a.op === 'failed') throw new Error(`typists: ${a.message}`);
      return a;
    },
    // Disconnected, it exits by itself (and a --cpu-prof run writes its profile too).
    stop: () => {
      if (child.connected) child.disconnect();
    },
  };
}

async function main() {
  const farm = new GuestFarm();
  const labvirt = newKey();
  const student = newKey();
  const stop: (() => Promise<void>)[] = [() => farm.stopAll()];
  try {
    const envs = [];
    const ex = createExecutor({
      privateKey: labvirt.private,
      gatewayPublicKey: labvirt.public,
      resolve: farm.resolve,
    });
    for (let i = 0; i < ENVS; i++) {
      const g = await farm.start({ labvirt: [labvirt.public], student: [] });
      await ex.installStudentKey(
        { envId: `env${i}`, node: 'control-plane', ip: g.ip },
        student.public,
      );
      envs.push(g);
    }
    await ex.close();
    const sessions = new Map<string, GatewaySession>();
    for (let i = 0; i < SESSIONS; i++) {
      const id = `s-${String(i).padStart(10, '0')}`;
      sessions.set(id, {
        sessionId: id,
        student: `student${i}`,
        envId: `env${i % ENVS}`,
        expiresAt: new Date(Date.now() + 3600_000),
        publicKeys: [student.public],
        nodes: [{ node: 'control-plane', ip: envs[i % ENVS]!.ip }],
      });
    }
    const gatewayHostKey = newKey();
    const gw = await startGateway({
      hostKey: gatewayHostKey.private,
      host: '127.0.0.1',
      port: 0,
      directory: withBridgeKey({ lookup: async (id) => sessions.get(id) }, labvirt.public),
      clientKey: labvirt.private,
      resolve: farm.resolve,
    });
    stop.unshift(() => gw.close());

    // The web front end, on its own HTTP server, with the session service
    // reduced to what the terminal asks (is this session active, which nodes).
    const links = new Map<string, string>();
    const tokens: SingleUseTokens = {
      putKeyLink: async (token, value) => void links.set(token, value),
      takeKeyLink: async (token) => {
        const v = links.get(token);
        links.delete(token);
        return v ?? 'unknown';
      },
    };
    const service = {
      status: async (id: string) =>
        ({
          id,
          student: sessions.get(id)!.student,
          labId: 'bench',
          labTitle: 'Bench',
          flavor: 'v1.30-1node',
          state: 'active',
          createdAt: new Date().toISOString(),
          expiresAt: new Date(Date.now() + 3600_000).toISOString(),
          hintsUsed: 0,
          hintsTotal: 0,
          connection: {
            mode: 'gateway',
            host: '127.0.0.1',
            port: gw.port,
            user: id,
            command: '',
            nodes: ['control-plane'],
          },
        }) satisfies SessionView,
    } as unknown as LabvirtService;
    const apiToken = 'bench-api-token-0123456789';
    /** A web front end on its own HTTP server; `inProcess`: its bridge reaches the gateway in memory, else over TCP. */
    const frontEnd = async (inProcess: boolean): Promise<string> => {
      const web = await createWebFrontEnd({
        service,
        tokens,
        apiToken,
        gateway: () => ({
          host: '127.0.0.1',
          port: gw.port,
          privateKey: labvirt.private,
          ...(inProcess ? { local: gw } : {}),
        }),
        persistentShells: false,
        logger: silentLogger(),
      });
      const app = Fastify();
      await app.register(web.routes);
      const sockets = web.attach(app.server);
      await app.listen({ host: '127.0.0.1', port: 0 });
      stop.unshift(async () => {
        sockets.close();
        await app.close();
      });
      return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    };

    const typists = await startTypists();
    stop.unshift(async () => typists.stop());
    const ids = [...sessions.keys()];
    const signInLinks = () =>
      Promise.all(
        ids.map(async (sessionId) => ({
          sessionId,
          token: await issueSignInToken(tokens, sessionId, 600),
        })),
      );
    const kinds = [
      { key: 'ssh', what: 'plain SSH through the gateway' },
      { key: 'web', what: 'web terminal (WebSocket → bridge → gateway in process)' },
      ...(WITH_TCP_BRIDGE
        ? [{ key: 'tcp', what: 'web terminal (WebSocket → bridge → gateway over TCP)' }]
        : []),
    ].map((k) => ({
      ...k,
      times: [] as number[],
      /** Each round's latencies: the blocks of the per-round ratios. */
      rounds: [] as number[][],
      /** Where each keystroke's time went (alternating rounds only). */
      legs: [] as Legs[],
      /** CPU time of this process (gateway, web front end, the sim guests' SSH servers) during the kind's rounds. */
      cpuMicros: 0,
      /** CPU time of the clients' process during the kind's rounds. */
      clientCpuMicros: 0,
      /** When this kind typed (this process's clock), to charge each GC pause to the kind that was typing. */
      windows: [] as [number, number][],
      /** The same in epoch ms, for `bench/profile-summary.ts --window` on a `--cpu-prof` run. */
      epochWindows: [] as string[],
      /** The event loop's delay while this kind typed: each round's p99, and the worst. */
      loopP99: [] as number[],
      loopMax: 0,
    }));
    const ssh = kinds[0]!;
    const web = kinds[1]!;
    const tcp = kinds[2];
    console.log(
      `${(await typists.ask({ op: 'open-ssh', kind: 'ssh', port: gw.port, privateKey: student.private, sessions: ids })).op === 'opened' ? SESSIONS : 0} SSH shells open`,
    );
    await typists.ask({
      op: 'open-web',
      kind: 'web',
      base: await frontEnd(true),
      links: await signInLinks(),
    });
    console.log(`${SESSIONS} web terminals open`);
    if (tcp) {
      await typists.ask({
        op: 'open-web',
        kind: 'tcp',
        base: await frontEnd(false),
        links: await signInLinks(),
      });
      console.log(`${SESSIONS} web terminals (bridge over TCP) open`);
    }
    await typists.ask({ op: 'ready' });

    gcObserver.observe({ entryTypes: ['gc'] });
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    for (let round = 0; round < ROUNDS; round++) {
      const keys = Math.floor(KEYS / ROUNDS) + (round < KEYS % ROUNDS ? 1 : 0);
      // Alternating: each round starts with another kind. Together: all kinds at once.
      const turns = TOGETHER ? [kinds] : kinds.map((_, i) => [kinds[(i + round) % kinds.length]!]);
      for (const turn of turns) {
        const cpu = process.cpuUsage();
        loopDelay.reset();
        gatewayBytes.clear();
        tracing = !TOGETHER;
        const start = performance.now();
        const startEpoch = Date.now();
        const answer = await typists.ask({ op: 'type', kinds: turn.map((k) => k.key), keys });
        if (answer.op !== 'typed') throw new Error(`typists answered ${answer.op}`);
        tracing = false;
        const used = process.cpuUsage(cpu);
        for (const kind of turn) {
          const keystrokes = answer.keystrokes[kind.key] ?? [];
          const times = keystrokes.map((k) => k.ms);
          kind.times.push(...times);
          kind.rounds.push(times);
          if (TOGETHER) continue;
          kind.windows.push([start, performance.now()]);
          kind.epochWindows.push(`${startEpoch} ${Date.now()}`);
          kind.cpuMicros += used.user + used.system;
          kind.clientCpuMicros += answer.cpuMicros;
          kind.loopP99.push(loopDelay.percentile(99) / 1e6);
          kind.loopMax = Math.max(kind.loopMax, loopDelay.max / 1e6);
          kind.legs.push(...legsOf(keystrokes));
        }
      }
    }
    loopDelay.disable();
    // GC entries arrive a moment after the pause.
    await new Promise((r) => setTimeout(r, 100));
    gcObserver.disconnect();
    await typists.ask({ op: 'close' });

    const line = (what: string, xs: number[]) =>
      console.log(
        `${what}: p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms (${xs.length} keystrokes)`,
      );
    console.log(
      `${SESSIONS} terminals of each kind open over ${ENVS} guests, ${KEYS} keystrokes each in ${ROUNDS} ${TOGETHER ? 'rounds, every kind typing at the same time' : 'alternating rounds'}; load ${machineLoad()}`,
    );
    for (const k of kinds) line(k.what, k.times);
    for (const k of TOGETHER ? [] : kinds) {
      console.log(
        `${k.what}: ${(k.cpuMicros / k.times.length).toFixed(0)} µs of labvirt's process's CPU per keystroke ` +
          `(gateway, web front end, sim guests' SSH servers), ${(k.clientCpuMicros / k.times.length).toFixed(0)} µs of the clients'`,
      );
      const legs = LEGS.map((leg) => {
        const xs = k.legs.map((l) => l[leg]);
        return `${leg} ${pct(xs, 50).toFixed(1)} / ${pct(xs, 99).toFixed(1)}`;
      });
      console.log(`  legs p50 / p99 ms: ${legs.join(', ')} (${k.legs.length} keystrokes)`);
      const pauses = gcPauses.filter((g) =>
        k.windows.some(([from, to]) => g.start >= from && g.start <= to),
      );
      const major = pauses.filter((g) => g.major);
      console.log(
        `  labvirt's process while it typed: ${pauses.length} GC pauses, ${pauses.reduce((t, g) => t + g.ms, 0).toFixed(0)} ms in all ` +
          `(${major.length} major, longest ${Math.max(0, ...pauses.map((g) => g.ms)).toFixed(1)} ms); ` +
          `event loop delay p99 ${median(k.loopP99).toFixed(1)} ms (median of rounds), max ${k.loopMax.toFixed(1)} ms`,
      );
      console.log(`  its rounds (epoch ms from, to): ${k.epochWindows.join(', ')}`);
    }
    /** A kind ÷ SSH at a percentile: over all keystrokes, and per round (their median, and each). */
    const ratios = (other: (typeof kinds)[number], p: number) => {
      const perRound = other.rounds.map((xs, r) => pct(xs, p) / pct(ssh.rounds[r]!, p));
      return {
        pooled: pct(other.times, p) / pct(ssh.times, p),
        median: median(perRound),
        perRound,
      };
    };
    const report = (name: string, other: (typeof kinds)[number]) => {
      const [r50, r99] = [ratios(other, 50), ratios(other, 99)];
      console.log(
        `${name}: p50 ${r50.pooled.toFixed(2)}, p99 ${r99.pooled.toFixed(2)} (all keystrokes); ` +
          `median of the ${ROUNDS} rounds' ratios p50 ${r50.median.toFixed(2)}, p99 ${r99.median.toFixed(2)}`,
      );
      console.log(
        `  per round p50: ${r50.perRound.map((r) => r.toFixed(2)).join(' ')}; p99: ${r99.perRound.map((r) => r.toFixed(2)).join(' ')}`,
      );
      return { r50, r99 };
    };
    const { r50, r99 } = report('web/SSH ratio', web);
    if (tcp) report('web over TCP/SSH ratio', tcp);
    result({
      what: `keystroke echo, ${SESSIONS} web terminals ÷ plain SSH, p50 / p99, all keystrokes`,
      figure: `${r50.pooled.toFixed(2)} / ${r99.pooled.toFixed(2)}`,
      target: '≤ 1.2 both',
      met: r50.pooled <= 1.2 && r99.pooled <= 1.2,
    });
    result({
      what: `the same, median of the ${ROUNDS} rounds' ratios, p50 / p99`,
      figure: `${r50.median.toFixed(2)} / ${r99.median.toFixed(2)}`,
      target: '≤ 1.2 both',
      met: r50.median <= 1.2 && r99.median <= 1.2,
    });
  } finally {
    for (const s of stop) await s().catch(() => undefined);
  }
}

main().then(
  () => {
    // The third number of profile-summary's --window: when a --cpu-prof profile ends.
    console.log(`process ends at ${Date.now()} (epoch ms)`);
    process.exit(0);
  },
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
