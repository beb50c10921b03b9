/**
 * The SSH gateway as students see it (run: `npx tsx bench/gateway-openssh.bench.ts`):
 * the OpenSSH client (`ssh`), labvirt's gateway and the simulated guests each
 * in their own processes, loopback only.
 *  - throughput, upload (`cat > /dev/null` fed BENCH_MB MiB) and download
 *    (`head -c`), through the gateway and straight to the guest in the same
 *    round, alternating; each round's ratio is printed and the figure is the
 *    median of the rounds' ratios, so one noisy round does not decide it.
 *    Each transfer also prints the CPU every process used per MiB (the
 *    `ssh` client, the gateway, the guests' process tree);
 *  - BENCH_SERIAL_LOGINS (default 20, at most BENCH_LOGINS) logins `ssh … true` one after another,
 *    straight to a guest and through the gateway to the same guest: the CPU
 *    one login costs each process (client, gateway, guests), with nothing
 *    else of the bench running (with BENCH_CPU_PROF the gateway's figures
 *    include the profiler's own cost);
 *  - BENCH_LOGINS (default 200) students running `ssh … true` through the
 *    gateway all at once: p50/p95 of login + first command, and the CPU each
 *    process used per login meanwhile.
 * Environment: BENCH_MB (default 32), BENCH_LOGINS, BENCH_SERIAL_LOGINS,
 * BENCH_ENVS (default 20), BENCH_ROUNDS (default 5), BENCH_PHASES (default
 * `throughput,serial,logins`), BENCH_CPU_PROF=<dir> (the gateway process runs
 * with `--cpu-prof` into that directory; the bench prints each phase's epoch
 * window for `bench/profile-summary.ts --window`), BENCH_BASELINE_ROOT=<dir>
 * (a second gateway from another checkout of labvirt, e.g. the commit before
 * a change, measured in the same rounds: its ratio to direct beside this
 * one's, so a change is judged within one run).
 */
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '../src/ssh/index.js';
import { ROOT, machineLoad, pct, processCpuMs, processTreeCpuMs, result } from './lib.js';

const MB = Number(process.env.BENCH_MB ?? 32);
const LOGINS = Number(process.env.BENCH_LOGINS ?? 200);
// At most BENCH_LOGINS, so the quick run (5 logins) stays quick.
const SERIAL_LOGINS = Number(process.env.BENCH_SERIAL_LOGINS ?? Math.min(20, Math.max(LOGINS, 1)));
const ENVS = Number(process.env.BENCH_ENVS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PHASES = new Set((process.env.BENCH_PHASES ?? 'throughput,serial,logins').split(','));
const CPU_PROF = process.env.BENCH_CPU_PROF;
const BASELINE_ROOT = process.env.BENCH_BASELINE_ROOT;

const dir = mkdtempSync(join(tmpdir(), 'labvirt-gwbench-'));
const labvirt = generateKeyPair();
const student = generateKeyPair();
const keyFile = join(dir, 'student_key');
writeFileSync(keyFile, student.private, { mode: 0o600 });

interface Proc {
  info: Record<string, unknown>;
  pid: number;
  stop: () => Promise<void>;
}

function startProc(
  role: string,
  extra: Record<string, unknown>,
  execArgv: string[] = [],
  root = ROOT,
) {
  const child = spawn(
    process.execPath,
    [...execArgv, '--import', 'tsx', join(root, 'bench', 'gateway-procs.ts'), role],
    {
      cwd: root,
      stdio: ['pipe', 'pipe', 'inherit'],
      env: {
        ...process.env,
        BENCH_GW: JSON.stringify({
          envs: ENVS,
          sessions: Math.max(LOGINS, 1),
          labvirt,
          student: { public: student.public },
          hostKey: generateKeyPair().private,
          ...extra,
        }),
      },
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise<Proc>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line)
        resolve({
          info: JSON.parse(line),
          pid: child.pid!,
          stop: () => {
            child.stdin.end();
            return exited;
          },
        });
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

/** CPU (ms) of the bench's finished children: the `ssh` clients, once each has exited. */
function reapedChildrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100; // cutime, cstime
}

/** CPU used by the clients, the gateway and the guests while `work` ran. */
async function measured<T>(
  gatewayPid: number,
  guestsPid: number,
  work: () => Promise<T>,
): Promise<{ value: T; cpu: { client: number; gateway: number; guests: number } }> {
  const before = {
    client: reapedChildrenCpuMs(),
    gateway: processCpuMs(gatewayPid),
    guests: processTreeCpuMs(guestsPid),
  };
  const value = await work();
  return {
    value,
    cpu: {
      client: reapedChildrenCpuMs() - before.client,
      gateway: processCpuMs(gatewayPid) - before.gateway,
      guests: processTreeCpuMs(guestsPid) - before.guests,
    },
  };
}

const fmtCpu = (cpu: { client: number; gateway: number; guests: number }, per: number) =>
  `client ${(cpu.client / per).toFixed(1)}, gateway ${(cpu.gateway / per).toFixed(1)}, guests ${(cpu.guests / per).toFixed(1)}`;

const med = (xs: number[]) => pct(xs, 50);
const stops: (() => Promise<void>)[] = [];
const windows: string[] = [];
let gatewayStoppedAt = 0;
const phase = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
  const from = Date.now();
  try {
    return await work();
  } finally {
    windows.push(`${name} ${from} ${Date.now()}`);
  }
};

console.log(`start: ${machineLoad()}`);
try {
  const guests = await startProc('guests', {});
  stops.push(guests.stop);
  const gateway = await startProc(
    'gateway',
    { guests: guests.info.guests },
    CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] : [],
  );
  stops.unshift(async () => {
    await gateway.stop();
    gatewayStoppedAt = Date.now();
  });
  const baseline = BASELINE_ROOT
    ? await startProc('gateway', { guests: guests.info.guests }, [], BASELINE_ROOT)
    : undefined;
  if (baseline) stops.push(baseline.stop);
  const guestPorts = Object.values(guests.info.guests as Record<string, number>);
  const gwPort = gateway.info.port as number;

  if (PHASES.has('throughput')) {
    const bytes = MB * 1024 * 1024;
    const payload = join(dir, 'payload');
    writeFileSync(payload, Buffer.alloc(bytes, 7));
    const rate = (ms: number) => MB / (ms / 1000);
    const transfer = async (
      label: string,
      port: number,
      user: string,
      up: boolean,
      gatewayPid = gateway.pid,
    ) => {
      const { value: ms, cpu } = await measured(gatewayPid, guests.pid, () =>
        up
          ? ssh(port, user, 'cat > /dev/null', payload)
          : ssh(port, user, `head -c ${bytes} /dev/zero`),
      );
      console.log(
        `  ${label.padEnd(16)} ${rate(ms).toFixed(1).padStart(6)} MB/s; CPU ms per MiB: ${fmtCpu(cpu, MB)}`,
      );
      return rate(ms);
    };
    const ratios = { up: [] as number[], down: [] as number[] };
    const baseRatios = { up: [] as number[], down: [] as number[] };
    const rates = { directUp: [] as number[], gwUp: [] as number[] };
    const ratesDown = { direct: [] as number[], gw: [] as number[] };
    await phase('throughput', async () => {
      for (let r = 0; r < ROUNDS; r++) {
        console.log(`round ${r + 1} of ${ROUNDS} (${MB} MiB each; ${machineLoad()})`);
        const du = await transfer('direct upload', guestPorts[0]!, 'student', true);
        const gu = await transfer('gateway upload', gwPort, 's-0000000000', true);
        const dd = await transfer('direct download', guestPorts[0]!, 'student', false);
        const gd = await transfer('gateway download', gwPort, 's-0000000000', false);
        if (baseline) {
          const port = baseline.info.port as number;
          baseRatios.up.push(
            (await transfer('baseline upload', port, 's-0000000000', true, baseline.pid)) / du,
          );
          baseRatios.down.push(
            (await transfer('baseline download', port, 's-0000000000', false, baseline.pid)) / dd,
          );
        }
        rates.directUp.push(du);
        rates.gwUp.push(gu);
        ratesDown.direct.push(dd);
        ratesDown.gw.push(gd);
        ratios.up.push(gu / du);
        ratios.down.push(gd / dd);
        console.log(
          `  round ${r + 1} ratio: upload ${(gu / du).toFixed(2)}, download ${(gd / dd).toFixed(2)}${baseline ? `; baseline ${baseRatios.up.at(-1)!.toFixed(2)}, ${baseRatios.down.at(-1)!.toFixed(2)}` : ''}`,
        );
      }
    });
    console.log(
      `openssh direct: upload ${med(rates.directUp).toFixed(1)} MB/s, download ${med(ratesDown.direct).toFixed(1)} MB/s; through the gateway: upload ${med(rates.gwUp).toFixed(1)} MB/s, download ${med(ratesDown.gw).toFixed(1)} MB/s (medians of ${ROUNDS}, ${MB} MiB each)`,
    );
    console.log(
      `ratios per round: upload ${ratios.up.map((x) => x.toFixed(2)).join(' ')}; download ${ratios.down.map((x) => x.toFixed(2)).join(' ')}`,
    );
    if (baseline)
      console.log(
        `baseline gateway (${BASELINE_ROOT}) ÷ direct: upload ${med(baseRatios.up).toFixed(2)}, download ${med(baseRatios.down).toFixed(2)} (medians; per round: ${baseRatios.up.map((x) => x.toFixed(2)).join(' ')}; ${baseRatios.down.map((x) => x.toFixed(2)).join(' ')})`,
      );
    const up = med(ratios.up);
    const down = med(ratios.down);
    result({
      what: 'OpenSSH through the gateway ÷ direct, upload / download',
      figure: `${up.toFixed(2)} / ${down.toFixed(2)} (median of ${ROUNDS} rounds' ratios; lowest ${Math.min(...ratios.up).toFixed(2)} / ${Math.min(...ratios.down).toFixed(2)})`,
      target: '≥ 0.8 both',
      met: up >= 0.8 && down >= 0.8,
    });
  }

  if (PHASES.has('serial')) {
    // One login at a time: what a login costs each process, with nothing else running.
    const series = async (
      label: string,
      port: number,
      user: (i: number) => string,
      gatewayPid = gateway.pid,
    ) => {
      const { value: times, cpu } = await measured(gatewayPid, guests.pid, async () => {
        const times: number[] = [];
        for (let i = 0; i < SERIAL_LOGINS; i++) times.push(await ssh(port, user(i), 'true'));
        return times;
      });
      console.log(
        `${label}, ${SERIAL_LOGINS} one at a time: p50 ${med(times).toFixed(0)} ms; CPU ms per login: ${fmtCpu(cpu, SERIAL_LOGINS)}`,
      );
      return cpu;
    };
    await phase('serial', async () => {
      await series('openssh logins straight to a guest', guestPorts[0]!, () => 'student');
      // The same guest as the direct series (session 0 is on guest 0).
      const viaGw = await series(
        'openssh logins through the gateway',
        gwPort,
        () => 's-0000000000',
      );
      if (baseline)
        await series(
          'openssh logins through the baseline gateway',
          baseline.info.port as number,
          () => 's-0000000000',
          baseline.pid,
        );
      result({
        what: 'CPU of one OpenSSH login + `true` through the gateway (one at a time)',
        figure: `${((viaGw.client + viaGw.gateway + viaGw.guests) / SERIAL_LOGINS).toFixed(1)} ms: ${fmtCpu(viaGw, SERIAL_LOGINS)}`,
      });
    });
  }

  if (PHASES.has('logins') && LOGINS > 0) {
    // A simulated guest starts its command helper at its first command (a
    // real VM's sshd is just there): each guest runs one before the burst.
    await Promise.all(guestPorts.map((port) => ssh(port, 'student', 'true')));
    // Each student's session is on one of BENCH_ENVS envs, as in a class.
    const { value: attempts, cpu } = await phase('logins', () =>
      measured(gateway.pid, guests.pid, () =>
        Promise.allSettled(
          Array.from({ length: LOGINS }, (_, i) =>
            ssh(gwPort, `s-${String(i).padStart(10, '0')}`, 'true', undefined, 60_000),
          ),
        ),
      ),
    );
    const logins = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
    const failedLogins = LOGINS - logins.length;
    if (logins.length === 0) logins.push(NaN);
    const total = cpu.client + cpu.gateway + cpu.guests;
    console.log(
      `openssh logins through the gateway, ${LOGINS} at once: p50 ${pct(logins, 50).toFixed(0)} ms, p95 ${pct(logins, 95).toFixed(0)} ms; CPU ms per login: ${fmtCpu(cpu, LOGINS)}; all ${LOGINS}: ${(total / 1000).toFixed(1)} s of CPU, ${(total / 2000).toFixed(1)} s on 2 cores`,
    );
    result({
      what: `${LOGINS} simultaneous OpenSSH logins through the gateway (login + \`true\`)`,
      figure: `p95 ${pct(logins, 95).toFixed(0)} ms (p50 ${pct(logins, 50).toFixed(0)} ms), ${failedLogins} failed or hung (60 s); CPU per login ${(total / LOGINS).toFixed(1)} ms (${fmtCpu(cpu, LOGINS)})`,
      target: 'p95 ≤ 500 ms',
      met: pct(logins, 95) <= 500 && failedLogins === 0,
    });
  }
} finally {
  for (const s of stops) await s();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`end: ${machineLoad()}`);
if (CPU_PROF)
  console.log(
    `profile windows (name from to; the gateway stopped at ${gatewayStoppedAt}):\n${windows.join('\n')}`,
  );
process.exit(0);
