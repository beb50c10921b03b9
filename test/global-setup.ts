import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ensureRedisServer } from '../src/redis/index.js';

/**
 * `npm test` on a machine with only Node.js and npm: the suite needs a real
 * redis-server and shellcheck. Install them once with apt-get when this runs
 * as root on a Debian-family system; otherwise the tests that need them say
 * how to install them.
 */
export default async function setup(): Promise<void> {
  try {
    await ensureRedisServer({ log: (line) => console.log(`[test setup] ${line}`) });
  } catch (err) {
    console.warn(`[test setup] ${(err as Error).message}`);
  }
  const hasShellcheck = ['/usr/bin/shellcheck', '/usr/local/bin/shellcheck'].some((p) =>
    existsSync(p),
  );
  if (!hasShellcheck && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    console.log('[test setup] shellcheck not found: installing it with apt-get (once)…');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('/usr/bin/apt-get', ['update', '-qq'], { env, stdio: 'ignore' });
    spawnSync(
      '/usr/bin/apt-get',
      ['install', '-y', '-qq', '--no-install-recommends', 'shellcheck'],
      {
        env,
        stdio: 'ignore',
      },
    );
  }
}
