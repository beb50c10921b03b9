/**
 * The web terminal bench's clients, in a process of their own, driven over
 * IPC by bench/web-terminal.bench.ts: the plain SSH shells and the browser
 * terminals' WebSockets are opened and typed into here. A student's SSH
 * client and browser do not run in labvirt's event loop; here they do not
 * either, so the SSH client's encryption and the WebSocket client's framing
 * neither delay labvirt's work nor count as its CPU, and the two kinds are
 * measured on the server's cost alone.
 */
import type { ClientChannel } from 'ssh2';
import { WebSocket } from 'ws';
import { connectClient } from '../test/sim-guest/fixtures.js';

/** What the bench asks of this process. */
export type Order =
  | { op: 'open-ssh'; kind: string; port: number; privateKey: string; sessions: string[] }
  | { op: 'open-web'; kind: string; base: string; links: { sessionId: string; token: string }[] }
  | { op: 'ready' }
  /** The named kinds type `keys` keystrokes in each of their terminals, all kinds at once. */
  | { op: 'type'; kinds: string[]; keys: number }
  | { op: 'close' };

/** One timed keystroke; times are milliseconds on a clock both processes share. */
export interface Keystroke {
  sessionId: string;
  typed: number;
  echoed: number;
  /** The latency, from this process's own monotonic clock. */
  ms: number;
}

export type Answer =
  | { op: 'opened'; kind: string; count: number }
  | { op: 'ready' }
  | { op: 'typed'; keystrokes: Record<string, Keystroke[]>; cpuMicros: number }
  | { op: 'failed'; message: string };

/** Milliseconds since the epoch at the monotonic clock's resolution (the bench reads the same clock). */
const sharedClock = () => performance.timeOrigin + performance.now();

/** Terminals opening at once (like the gateway bench); all stay open for the measurement. */
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 50);

/** Runs `open` for every item, at most PARALLEL at a time, keeping the order. */
async function openAll<I, T>(items: I[], open: (item: I) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await open(items[i]!);
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

/** A pipe being typed into: waits for its shell, then times keystrokes one after another. */
class Typist {
  private seen = '';
  private waiter: (() => void) | undefined;
  private typed = 0;
  constructor(
    private readonly pipe: Pipe,
    readonly sessionId: string,
  ) {
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

  /** Types `n` letters one after another, each when the previous one echoed. */
  async type(n: number): Promise<Keystroke[]> {
    const out: Keystroke[] = [];
    for (let i = 0; i < n; i++) {
      const key = String.fromCharCode(97 + (this.typed++ % 26));
      this.seen = '';
      const typed = sharedClock();
      const t = performance.now();
      this.pipe.write(key);
      await this.until(() => this.seen.includes(key));
      const ms = performance.now() - t;
      out.push({ sessionId: this.sessionId, typed, echoed: typed + ms, ms });
    }
    this.pipe.write('\x15'); // Ctrl-U: the typed letters never run
    return out;
  }

  close(): void {
    this.pipe.close();
  }
}

const typists = new Map<string, Typist[]>();

async function openSsh(order: Extract<Order, { op: 'open-ssh' }>): Promise<Typist[]> {
  return openAll(order.sessions, async (sessionId) => {
    const c = await connectClient({
      port: order.port,
      username: sessionId,
      privateKey: order.privateKey,
      readyTimeout: 60_000,
    });
    const stream = await new Promise<ClientChannel>((resolve, reject) =>
      c.shell({ term: 'xterm', cols: 80, rows: 24 }, (err, s) => (err ? reject(err) : resolve(s))),
    );
    return new Typist(
      {
        write: (d) => stream.write(d),
        onOutput: (l) => stream.on('data', (b: Buffer) => l(b.toString('utf8'))),
        close: () => c.end(),
      },
      sessionId,
    );
  });
}

/** The browser's way in: the single-use sign-in link, its cookie, the terminal's WebSocket. */
async function openWeb(order: Extract<Order, { op: 'open-web' }>): Promise<Typist[]> {
  const { base } = order;
  return openAll(order.links, async ({ sessionId, token }) => {
    const res = await fetch(`${base}/s/${sessionId}?t=${token}`, { redirect: 'manual' });
    const cookie = res.headers.get('set-cookie')!.split(';')[0]!;
    const ws = new WebSocket(
      `${base.replace('http', 'ws')}/s/${sessionId}/terminal?node=control-plane&cols=80&rows=24`,
      { headers: { cookie, origin: base } },
    );
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new Typist(
      {
        write: (d) => ws.send(Buffer.from(d), { binary: true }),
        onOutput: (l) =>
          ws.on('message', (data: Buffer, binary: boolean) => binary && l(data.toString('utf8'))),
        close: () => ws.close(),
      },
      sessionId,
    );
  });
}

async function serve(order: Order): Promise<Answer> {
  switch (order.op) {
    case 'open-ssh':
    case 'open-web': {
      const opened = order.op === 'open-ssh' ? await openSsh(order) : await openWeb(order);
      typists.set(order.kind, opened);
      return { op: 'opened', kind: order.kind, count: opened.length };
    }
    case 'ready':
      await Promise.all([...typists.values()].flat().map((t) => t.ready()));
      return { op: 'ready' };
    case 'type': {
      const cpu = process.cpuUsage();
      const typed = await Promise.all(
        order.kinds.map(
          async (kind) =>
            [
              kind,
              (await Promise.all((typists.get(kind) ?? []).map((t) => t.type(order.keys)))).flat(),
            ] as const,
        ),
      );
      const used = process.cpuUsage(cpu);
      return {
        op: 'typed',
        keystrokes: Object.fromEntries(typed),
        cpuMicros: used.user + used.system,
      };
    }
    case 'close':
      for (const t of [...typists.values()].flat()) t.close();
      typists.clear();
      return { op: 'ready' };
  }
}

process.on('message', (order: Order) => {
  serve(order).then(
    (answer) => process.send!(answer),
    (err: Error) => process.send!({ op: 'failed', message: err.stack ?? err.message }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ op: 'ready' } satisfies Answer);
