import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installWithApt } from '../src/host-packages/index.js';
import { ensureRedisServer } from '../src/redis/index.js';

/** Debian packages the suite runs, by a binary each provides. */
const PACKAGES: [binary: string, pkg: string][] = [
  ['/usr/bin/shellcheck', 'shellcheck'],
  ['/usr/bin/bwrap', 'bubblewrap'],
  ['/usr/bin/cloud-init', 'cloud-init'],
  // Sim guests use the host's /usr: with tmux there, web terminals keep their shells (test/web).
  ['/usr/bin/tmux', 'tmux'],
  // OpenSSH's client: the gateway tests and the benches' smoke run (test/bench) log in with it.
  ['/usr/bin/ssh', 'openssh-client'],
];

/**
 * `npm test` on a machine with only Node.js and npm: the suite needs a real
 * redis-server, bubblewrap (the sim's guest sandboxes), shellcheck,
 * cloud-init and tmux. Install them once with apt-get when this runs as root on a
 * Debian-family system; otherwise the tests that need them say how to install
 * them.
 */
export default async function setup(): Promise<() => void> {
  const log = (line: string) => console.log(`[test setup] ${line}`);
  const runTmp = useRunTempDir();
  try {
    await ensureRedisServer({ log });
  } catch (err) {
    console.warn(`[test setup] ${(err as Error).message}`);
  }
  for (const [binary, pkg] of PACKAGES) {
    if (existsSync(binary) || existsSync(binary.replace('/usr/bin/', '/usr/local/bin/'))) continue;
    const failed = installWithApt(pkg, { log });
    if (failed) console.warn(`[test setup] ${pkg} is missing and was not installed: ${failed}`);
  }
  return () => rmSync(runTmp, { recursive: true, force: true });
}

/**
 * Points TMPDIR at a directory of this run's own and returns it, so that the
 * teardown removes everything the run left there: test files' scratch
 * directories, and those of the processes the tests start (labvirt, the
 * simulator's guest tools, redis-server), which a worker ended by a signal
 * never removes itself. The workers and their children inherit it; sim guests
 * do not (they get an environment of their own).
 */
function useRunTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-test-run-'));
  process.env.TMPDIR = dir;
  return dir;
}
