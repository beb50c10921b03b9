/**
 * The SSH gateway as students see it (run: `npx tsx bench/gateway-openssh.bench.ts`):
 * the OpenSSH client (`ssh`), labvirt's gateway and the simulated guests each
 * in their own processes, loopback only.
 *  - throughput, upload (`cat > /dev/null` fed BENCH_MB MiB) and download
 *    (`head -c`), through the gateway and straight to the guest in the same
 *    run, alternating; the ratio is the figure;
 *  - BENCH_LOGINS (default 200) students running `ssh … true` through the
 *    gateway all at once: p50/p95 of login + first command.
 * Environment: BENCH_MB (default 32), BENCH_LOGINS, BENCH_ENVS (default 20), BENCH_ROUNDS (default 3).
 */
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '../src/ssh/index.js';
import { ROOT, pct, result } from './lib.js';

const MB = Number(process.env.BENCH_MB ?? 32);
const LOGINS = Number(process.env.BENCH_LOGINS ?? 200);
const ENVS = Number(process.env.BENCH_ENVS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const dir = mkdtempSync(join(tmpdir(), 'labvirt-gwbench-'));
const labvirt = generateKeyPair();
const student = generateKeyPair();
const keyFile = join(dir, 'student_key');
writeFileSync(keyFile, student.private, { mode: 0o600 });

function startProc(role: string, extra: Record<string, unknown>) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'gateway-procs.ts'), role],
    {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'inherit'],
      env: {
        ...process.env,
        BENCH_GW: JSON.stringify({
          envs: ENVS,
          sessions: LOGINS,
          labvirt,
          student: { public: student.public },
          hostKey: generateKeyPair().private,
          ...extra,
        }),
      },
    },
  );
  return new Promise<{ info: Record<string, unknown>; stop: () => void }>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ info: JSON.parse(line), stop: () => child.stdin.end() });
    });
    child.once('exit', (code) => reject(new Error(`${role} exited ${code}`)));
  });
}

function ssh(
  port: number,
  user: string,
  command: string,
  stdinFile?: string,
  timeoutMs = 120_000,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const args = [
      '-q',
      '-p',
      String(port),
      '-i',
      keyFile,
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'IdentitiesOnly=yes',
      `${user}@127.0.0.1`,
      command,
    ];
    const p = spawn('/usr/bin/ssh', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('exit', () => clearTimeout(timer));
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    if (stdinFile) createReadStream(stdinFile).pipe(p.stdin);
    else p.stdin.end();
    p.once('exit', (code) =>
      code === 0
        ? resolve(performance.now() - started)
        : reject(new Error(`ssh ${user}@:${port} ${command}: exit ${code} ${err.trim()}`)),
    );
  });
}

const stops: (() => void)[] = [];
try {
  const guests = await startProc('guests', {});
  stops.push(guests.stop);
  const gateway = await startProc('gateway', { guests: guests.info.guests });
  stops.push(gateway.stop);
  const guestPorts = Object.values(guests.info.guests as Record<string, number>);
  const gwPort = gateway.info.port as number;
  const bytes = MB * 1024 * 1024;
  const payload = join(dir, 'payload');
  writeFileSync(payload, Buffer.alloc(bytes, 7));

  const rate = (ms: number) => MB / (ms / 1000);
  const direct = { up: [] as number[], down: [] as number[] };
  const viaGw = { up: [] as number[], down: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    direct.up.push(rate(await ssh(guestPorts[0]!, 'student', 'cat > /dev/null', payload)));
    viaGw.up.push(rate(await ssh(gwPort, 's-0000000000', 'cat > /dev/null', payload)));
    direct.down.push(rate(await ssh(guestPorts[0]!, 'student', `head -c ${bytes} /dev/zero`)));
    viaGw.down.push(rate(await ssh(gwPort, 's-0000000000', `head -c ${bytes} /dev/zero`)));
  }
  const med = (xs: number[]) => pct(xs, 50);
  console.log(
    `openssh direct: upload ${med(direct.up).toFixed(1)} MB/s, download ${med(direct.down).toFixed(1)} MB/s; through the gateway: upload ${med(viaGw.up).toFixed(1)} MB/s, download ${med(viaGw.down).toFixed(1)} MB/s (median of ${ROUNDS}, ${MB} MiB each)`,
  );
  const up = med(viaGw.up) / med(direct.up);
  const down = med(viaGw.down) / med(direct.down);
  result({
    what: 'OpenSSH through the gateway ÷ direct, upload / download',
    figure: `${up.toFixed(2)} / ${down.toFixed(2)}`,
    target: '≥ 0.8 both',
    met: up >= 0.8 && down >= 0.8,
  });

  // Each student's session is on one of BENCH_ENVS envs, as in a class.
  const attempts = await Promise.allSettled(
    Array.from({ length: LOGINS }, (_, i) =>
      ssh(gwPort, `s-${String(i).padStart(10, '0')}`, 'true', undefined, 60_000),
    ),
  );
  const logins = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
  const failedLogins = LOGINS - logins.length;
  if (logins.length === 0) logins.push(NaN);
  console.log(
    `openssh logins through the gateway, ${LOGINS} at once: p50 ${pct(logins, 50).toFixed(0)} ms, p95 ${pct(logins, 95).toFixed(0)} ms`,
  );
  result({
    what: `${LOGINS} simultaneous OpenSSH logins through the gateway (login + \`true\`)`,
    figure: `p95 ${pct(logins, 95).toFixed(0)} ms (p50 ${pct(logins, 50).toFixed(0)} ms), ${failedLogins} failed or hung (60 s)`,
    target: 'p95 ≤ 500 ms',
    met: pct(logins, 95) <= 500 && failedLogins === 0,
  });
} finally {
  for (const s of stops) s();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
