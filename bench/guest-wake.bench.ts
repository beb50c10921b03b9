/**
 * What a sim guest's idle stop (`guestIdleStopSeconds`, src/sim/README.md
 * "Idle guests") costs the next command (run: `npx tsx
 * bench/guest-wake.bench.ts`): one sandboxed guest, one SSH connection;
 * BENCH_ROUNDS (default 20) times: wait until its helper has gone, time a
 * command (`true`: the helper's bwrap and Node start, then the command),
 * then time the same command again with the helper up. The difference is
 * what a claim's first command on a node would pay if warm envs' guests
 * were stopped.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import ssh2, { type Client as ClientType } from 'ssh2';
import { startGuest } from '../src/sim/guest/index.js';
import { generateKeyPair } from '../src/ssh/index.js';
import { machineLoad, pct, result, waitFor } from './lib.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const IDLE_MS = 300;

/** Whether the guest's sandbox is up: a bwrap holding `root` as its `/` (it ends with the helper). */
function sandboxUp(root: string): boolean {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const at = argv.indexOf(root);
      if (at > 0 && argv[at - 1] === '--bind' && argv[at + 1] === '/') return true;
    } catch {
      /* gone */
    }
  }
  return false;
}

const dir = mkdtempSync(join(tmpdir(), 'labvirt-bench-wake-'));
const key = generateKeyPair();
const guest = await startGuest({
  namespace: 'bench',
  vmiName: 'control-plane',
  ip: '10.244.0.10',
  role: 'control-plane',
  userData:
    '#cloud-config\n' +
    stringify({ users: [{ name: 'labvirt', ssh_authorized_keys: [key.public] }] }),
  sandboxRoot: dir,
  bootstrapDelayMs: 0,
  idleStopMs: IDLE_MS,
});
const client = await new Promise<ClientType>((resolve, reject) => {
  const c = new ssh2.Client();
  c.once('ready', () => resolve(c));
  c.once('error', reject);
  c.connect({ host: '127.0.0.1', port: guest.port, username: 'labvirt', privateKey: key.private });
});
const timed = () =>
  new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    client.exec('true', (err, stream) => {
      if (err) return reject(err);
      stream.on('data', () => undefined);
      stream.on('close', () => resolve(performance.now() - t0));
      stream.end();
    });
  });
const cold: number[] = [];
const warm: number[] = [];
try {
  console.log(`guest-wake: ${machineLoad()} at the start`);
  for (let i = 0; i < ROUNDS; i++) {
    await waitFor(async () => !sandboxUp(dir), 30_000, 'the helper gone', 20);
    cold.push(await timed());
    warm.push(await timed());
  }
  console.log(
    `guest-wake: command after an idle stop p50 ${pct(cold, 50).toFixed(0)} ms, p95 ${pct(cold, 95).toFixed(0)} ms; with the helper up p50 ${pct(warm, 50).toFixed(0)} ms, p95 ${pct(warm, 95).toFixed(0)} ms (${ROUNDS} rounds; ${machineLoad()})`,
  );
  result({
    what: 'a sim guest command after its helper stopped idle (a bwrap and a Node start)',
    figure: `+${(pct(cold, 50) - pct(warm, 50)).toFixed(0)} ms at p50 (${pct(cold, 50).toFixed(0)} vs ${pct(warm, 50).toFixed(0)} ms)`,
  });
} finally {
  client.end();
  await guest.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
