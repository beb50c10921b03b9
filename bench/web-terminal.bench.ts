/**
 * Web terminal benchmark (run: `npx tsx bench/web-terminal.bench.ts`), loopback only:
 * BENCH_SESSIONS (default 200) web terminals and as many plain SSH shells
 * open at once, each typing BENCH_KEYS (default 20) keystrokes one after
 * another; the figure is the keystroke → echo latency, p50/p99, through the
 * web bridge (WebSocket → labvirt → SSH gateway → guest) against the same
 * through plain SSH to the gateway, and their ratio (goal: within 1.2×).
 * The two kinds type in alternating rounds (BENCH_ROUNDS, default 4: all
 * web terminals, then all SSH shells, then the other way round…), so a
 * change in the machine's load during the run weighs on both alike.
 * Both are plain shells (the web terminal's tmux is off): the figure is the
 * transport's cost.
 * BENCH_WITH_TCP_BRIDGE=1 adds a third kind in the same rounds: web
 * terminals whose bridge reaches the gateway over TCP (as a replica without
 * a gateway of its own does), for a before/after in one run.
 * BENCH_TOGETHER=1 has every kind type at the same time in each round (all
 * 200 web terminals and all 200 SSH shells at once), so that the machine's
 * load at any moment weighs on both alike.
 * Environment: BENCH_SESSIONS, BENCH_KEYS, BENCH_ROUNDS, BENCH_ENVS (default 20),
 * BENCH_WITH_TCP_BRIDGE, BENCH_TOGETHER.
 */
import Fastify from 'fastify';
import type { ClientChannel } from 'ssh2';
import { WebSocket } from 'ws';
import { silentLogger } from '../src/log/index.js';
import type { LabvirtService, SessionView } from '../src/sessions/types.js';
import { createExecutor, startGateway, type GatewaySession } from '../src/ssh/index.js';
import {
  createWebFrontEnd,
  issueSignInToken,
  withBridgeKey,
  type SingleUseTokens,
} from '../src/web/index.js';
import { GuestFarm, connectClient, newKey } from '../test/sim-guest/fixtures.js';
import { machineLoad, pct, result } from './lib.js';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
const KEYS = Number(process.env.BENCH_KEYS ?? 20);
const ENVS = Number(process.env.BENCH_ENVS ?? 20);
const ROUNDS = Math.max(1, Math.min(KEYS, Number(process.env.BENCH_ROUNDS ?? 4)));
/** Also time web terminals whose bridge reaches the gateway over TCP (an API-only replica; the bridge before the in-process hand-off). */
const WITH_TCP_BRIDGE = process.env.BENCH_WITH_TCP_BRIDGE === '1';
/**
 * Every kind types at the same time in each round, instead of one kind after
 * the other: a change in the machine's load (other processes) then weighs
 * on both kinds within the same milliseconds, not only within the same run.
 */
const TOGETHER = process.env.BENCH_TOGETHER === '1';
/** Terminals opening at once (like the gateway bench); all stay open for the measurement. */
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 50);

/** Runs `open` for every id, at most PARALLEL at a time, keeping the order. */
async function openAll<T>(ids: string[], open: (id: string) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(ids.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, ids.length) }, async () => {
      while (next < ids.length) {
        const i = next++;
        out[i] = await open(ids[i]!);
      }
    }),
  );
  return out;
}

/** One terminal, whatever carries it: write a key, hear the output. */
interface Pipe {
  write(data: string): void;
  onOutput(listener: (text: string) => void): void;
  close(): void;
}

/** A pipe being typed into: waits for its shell, then times keystrokes in batches. */
class Typist {
  private seen = '';
  private waiter: (() => void) | undefined;
  private typed = 0;
  constructor(private readonly pipe: Pipe) {
    pipe.onOutput((text) => {
      this.seen += text;
      this.waiter?.();
    });
  }

  private until(test: () => boolean, ms = 60_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (test()) return resolve();
      const timer = setTimeout(() => reject(new Error(`no echo within ${ms} ms`)), ms);
      this.waiter = () => {
        if (!test()) return;
        clearTimeout(timer);
        this.waiter = undefined;
        resolve();
      };
    });
  }

  /** Warm-up, not measured: a key every half second until the shell echoes one. */
  async ready(): Promise<void> {
    const poke = setInterval(() => this.pipe.write('z'), 500);
    this.pipe.write('z');
    await this.until(() => this.seen.includes('z')).finally(() => clearInterval(poke));
    await new Promise((r) => setTimeout(r, 300));
  }

  /** Types `n` letters one after another, each when the previous one echoed; their latencies. */
  async type(n: number): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const key = String.fromCharCode(97 + (this.typed++ % 26));
      this.seen = '';
      const t = performance.now();
      this.pipe.write(key);
      await this.until(() => this.seen.includes(key));
      times.push(performance.now() - t);
    }
    this.pipe.write('\x15'); // Ctrl-U: the typed letters never run
    return times;
  }
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

    // Plain SSH: every session's shell through the gateway at once.
    const sshPipes: Pipe[] = await openAll([...sessions.keys()], async (id) => {
      const c = await connectClient({
        port: gw.port,
        username: id,
        privateKey: student.private,
        readyTimeout: 60_000,
      });
      const stream = await new Promise<ClientChannel>((resolve, reject) =>
        c.shell({ term: 'xterm', cols: 80, rows: 24 }, (err, s) =>
          err ? reject(err) : resolve(s),
        ),
      );
      return {
        write: (d) => stream.write(d),
        onOutput: (l) => stream.on('data', (b: Buffer) => l(b.toString('utf8'))),
        close: () => c.end(),
      };
    });
    console.log(`${sshPipes.length} SSH shells open`);

    // The web bridge: sign in (the real single-use link), open the WebSocket.
    const openWeb = (base: string) =>
      openAll([...sessions.keys()], async (id): Promise<Pipe> => {
        const token = await issueSignInToken(tokens, id, 600);
        const res = await fetch(`${base}/s/${id}?t=${token}`, { redirect: 'manual' });
        const cookie = res.headers.get('set-cookie')!.split(';')[0]!;
        const ws = new WebSocket(
          `${base.replace('http', 'ws')}/s/${id}/terminal?node=control-plane&cols=80&rows=24`,
          { headers: { cookie, origin: base } },
        );
        await new Promise((resolve, reject) => {
          ws.once('open', resolve);
          ws.once('error', reject);
        });
        return {
          write: (d) => ws.send(Buffer.from(d), { binary: true }),
          onOutput: (l) =>
            ws.on('message', (data: Buffer, binary: boolean) => binary && l(data.toString('utf8'))),
          close: () => ws.close(),
        };
      });
    const webPipes = await openWeb(await frontEnd(true));
    console.log(`${webPipes.length} web terminals open`);
    const tcpPipes = WITH_TCP_BRIDGE ? await openWeb(await frontEnd(false)) : [];
    if (WITH_TCP_BRIDGE) console.log(`${tcpPipes.length} web terminals (bridge over TCP) open`);

    const kinds = [
      { what: 'plain SSH through the gateway', pipes: sshPipes },
      { what: 'web terminal (WebSocket → bridge → gateway in process)', pipes: webPipes },
      { what: 'web terminal (WebSocket → bridge → gateway over TCP)', pipes: tcpPipes },
    ]
      .filter((k) => k.pipes.length > 0)
      .map((k) => ({
        ...k,
        typists: k.pipes.map((p) => new Typist(p)),
        times: [] as number[],
        /** CPU time of this process (clients, gateway, web front end, the guests' SSH servers) during the kind's rounds. */
        cpuMicros: 0,
      }));
    await Promise.all(kinds.flatMap((k) => k.typists.map((t) => t.ready())));
    for (let round = 0; round < ROUNDS; round++) {
      const keys = Math.floor(KEYS / ROUNDS) + (round < KEYS % ROUNDS ? 1 : 0);
      if (TOGETHER) {
        // Every kind types at the same time: whatever the machine does meanwhile weighs on all alike.
        const typed = await Promise.all(
          kinds.map(async (kind) =>
            (await Promise.all(kind.typists.map((t) => t.type(keys)))).flat(),
          ),
        );
        typed.forEach((times, i) => kinds[i]!.times.push(...times));
        continue;
      }
      // Each round starts with another kind.
      const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]!);
      for (const kind of order) {
        const cpu = process.cpuUsage();
        kind.times.push(...(await Promise.all(kind.typists.map((t) => t.type(keys)))).flat());
        const used = process.cpuUsage(cpu);
        kind.cpuMicros += used.user + used.system;
      }
    }
    for (const k of kinds) for (const p of k.pipes) p.close();
    const [sshTimes, webTimes, tcpTimes] = kinds.map((k) => k.times) as [
      number[],
      number[],
      number[] | undefined,
    ];

    const line = (what: string, xs: number[]) =>
      console.log(
        `${what}: p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms (${xs.length} keystrokes)`,
      );
    console.log(
      `${SESSIONS} terminals of each kind open over ${ENVS} guests, ${KEYS} keystrokes each in ${ROUNDS} ${TOGETHER ? 'rounds, every kind typing at the same time' : 'alternating rounds'}; load ${machineLoad()}`,
    );
    for (const k of kinds) line(k.what, k.times);
    for (const k of TOGETHER ? [] : kinds)
      console.log(
        `${k.what}: ${(k.cpuMicros / k.times.length).toFixed(0)} µs of this process's CPU per keystroke`,
      );
    const r50 = pct(webTimes, 50) / pct(sshTimes, 50);
    const r99 = pct(webTimes, 99) / pct(sshTimes, 99);
    console.log(`web/SSH ratio: p50 ${r50.toFixed(2)}, p99 ${r99.toFixed(2)}`);
    if (tcpTimes) {
      const t50 = pct(tcpTimes, 50) / pct(sshTimes, 50);
      const t99 = pct(tcpTimes, 99) / pct(sshTimes, 99);
      console.log(`web over TCP/SSH ratio: p50 ${t50.toFixed(2)}, p99 ${t99.toFixed(2)}`);
    }
    result({
      what: `keystroke echo, ${SESSIONS} web terminals ÷ plain SSH, p50 / p99`,
      figure: `${r50.toFixed(2)} / ${r99.toFixed(2)}`,
      target: '≤ 1.2 both',
      met: r50 <= 1.2 && r99 <= 1.2,
    });
  } finally {
    for (const s of stop) await s().catch(() => undefined);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
