/**
 * SSH gateway benchmark (run: `npx tsx bench/gateway.bench.ts`), loopback only:
 *  - connection set-up time through the gateway (handshake + auth + the first
 *    command on the control plane, which opens the gateway's own connection to
 *    the guest), p50/p95, for BENCH_CONNECTIONS (default 200) students
 *    connecting concurrently (at most BENCH_PARALLEL, default 50, handshaking
 *    at once) and then all held open;
 *  - throughput in MB/s, upload and download, through the gateway vs. directly
 *    to the guest in the same run, while those connections are held, and the ratio.
 * Environment: BENCH_CONNECTIONS, BENCH_PARALLEL, BENCH_ENVS (default 20), BENCH_MB (default 32).
 */
import type { Client } from 'ssh2';
import { createExecutor, startGateway, type GatewaySession } from '../src/ssh/index.js';
import { GuestFarm, connectClient, newKey } from '../test/sim-guest/fixtures.js';
import { result } from './lib.js';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 200);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 50);
const ENVS = Number(process.env.BENCH_ENVS ?? 20);
const MB = Number(process.env.BENCH_MB ?? 32);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

function execDone(c: Client, command: string, upload?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, stream) => {
      if (err) return reject(err);
      let received = 0;
      let code = -1;
      stream.on('data', (d: Buffer) => (received += d.length));
      stream.stderr.resume();
      stream.on('exit', (c2: number) => (code = c2));
      stream.on('close', () =>
        code === 0 ? resolve(received) : reject(new Error(`${command}: exit ${code}`)),
      );
      if (upload) {
        const chunk = Buffer.alloc(64 * 1024, 1);
        let left = upload;
        const pump = () => {
          while (left > 0) {
            left -= chunk.length;
            if (!stream.write(chunk)) return void stream.once('drain', pump);
          }
          stream.end();
        };
        pump();
      } else stream.end();
    });
  });
}

async function throughput(c: Client): Promise<{ up: number; down: number }> {
  const bytes = MB * 1024 * 1024;
  let t = performance.now();
  await execDone(c, 'cat > /dev/null', bytes);
  const up = bytes / 1024 / 1024 / ((performance.now() - t) / 1000);
  t = performance.now();
  const got = await execDone(c, `head -c ${bytes} /dev/zero`);
  const down = got / 1024 / 1024 / ((performance.now() - t) / 1000);
  return { up, down };
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
    for (let i = 0; i < CONNECTIONS; i++) {
      const g = envs[i % ENVS]!;
      const id = `s-${String(i).padStart(10, '0')}`;
      sessions.set(id, {
        sessionId: id,
        student: `student${i}`,
        envId: `env${i % ENVS}`,
        expiresAt: new Date(Date.now() + 3600_000),
        publicKeys: [student.public],
        nodes: [{ node: 'control-plane', ip: g.ip }],
      });
    }
    const gw = await startGateway({
      hostKey: newKey().private,
      host: '127.0.0.1',
      port: 0,
      directory: { lookup: async (id) => sessions.get(id) },
      clientKey: labvirt.private,
      resolve: farm.resolve,
    });
    stop.unshift(() => gw.close());

    // One at a time first: the cost of a login without contention.
    const alone: number[] = [];
    for (const id of [...sessions.keys()].slice(0, 10)) {
      const t = performance.now();
      const c = await connectClient({ port: gw.port, username: id, privateKey: student.private });
      await execDone(c, 'true');
      alone.push(performance.now() - t);
      c.end();
    }
    console.log(
      `set-up time, one student at a time (${alone.length}): p50 ${pct(alone, 50).toFixed(1)} ms`,
    );

    const held: Client[] = [];
    stop.unshift(async () => held.forEach((c) => c.end()));
    const setup: number[] = [];
    const ids = [...sessions.keys()];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: Math.min(PARALLEL, ids.length) }, async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          const t = performance.now();
          const c = await connectClient({
            port: gw.port,
            username: id,
            privateKey: student.private,
            readyTimeout: 60_000,
          });
          await execDone(c, 'true');
          setup.push(performance.now() - t);
          held.push(c);
        }
      }),
    );
    const wall = performance.now() - t0;
    console.log(
      `connections through the gateway: ${held.length} held open (${PARALLEL} connecting at once)`,
    );
    console.log(`set-up time (login + first command) p50: ${pct(setup, 50).toFixed(1)} ms`);
    console.log(`set-up time (login + first command) p95: ${pct(setup, 95).toFixed(1)} ms`);
    console.log(`all ${held.length} connected in ${(wall / 1000).toFixed(2)} s`);
    result({
      what: `${CONNECTIONS} logins through the gateway (${PARALLEL} at once, ssh2 clients)`,
      figure: `p95 ${pct(setup, 95).toFixed(0)} ms`,
      target: 'p95 ≤ 500 ms',
      met: pct(setup, 95) <= 500,
    });

    const direct = await connectClient({
      port: envs[0]!.guest.port,
      username: 'student',
      privateKey: student.private,
    });
    stop.unshift(async () => void direct.end());
    const viaGw = held[0]!;
    const d = await throughput(direct);
    const g = await throughput(viaGw);
    console.log(
      `throughput direct to the guest: upload ${d.up.toFixed(1)} MB/s, download ${d.down.toFixed(1)} MB/s (${MB} MB each)`,
    );
    console.log(
      `throughput through the gateway: upload ${g.up.toFixed(1)} MB/s, download ${g.down.toFixed(1)} MB/s`,
    );
    console.log(
      `gateway/direct ratio: upload ${(g.up / d.up).toFixed(2)}, download ${(g.down / d.down).toFixed(2)}`,
    );
    result({
      what: 'gateway ÷ direct throughput, upload / download (ssh2 client)',
      figure: `${(g.up / d.up).toFixed(2)} / ${(g.down / d.down).toFixed(2)}`,
      target: '≥ 0.8 both',
      met: g.up / d.up >= 0.8 && g.down / d.down >= 0.8,
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
