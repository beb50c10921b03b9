import { existsSync } from 'node:fs';
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
export default async function setup(): Promise<void> {
  const log = (line: string) => console.log(`[test setup] ${line}`);
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
}
