import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

/**
 * Installing a Debian package this machine lacks (redis-server for Redis,
 * bubblewrap for the simulator's guests), so that `labvirt dev` and the tests
 * work on a fresh machine with only Node.js and npm. Only as root and only
 * with apt-get: anything else gets a clear refusal from the caller.
 */

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface InstallOptions {
  env?: NodeJS.ProcessEnv;
  /** Allow installing (default: when running as root). */
  allowInstall?: boolean;
  log?: (line: string) => void;
}

/**
 * Installs `pkg` with apt-get. Returns undefined when it did, or why it could
 * not (not root, no apt-get, apt-get failed) for the caller's error message.
 */
export function installWithApt(pkg: string, options: InstallOptions = {}): string | undefined {
  const allowInstall = options.allowInstall ?? process.getuid?.() === 0;
  if (!allowInstall) return 'not running as root';
  const aptGet = ['/usr/bin/apt-get', '/bin/apt-get'].find(isExecutable);
  if (!aptGet) return 'no apt-get on this system';
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  log(`${pkg} not found: installing it with apt-get (once)…`);
  const env = { ...(options.env ?? process.env), DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', '--no-install-recommends', pkg],
  ]) {
    const r = spawnSync(aptGet, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) return `apt-get ${args[0]} failed: ${r.stderr?.toString().slice(-300)}`;
  }
  return undefined;
}
