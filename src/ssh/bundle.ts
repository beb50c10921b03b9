/**
 * How a script reaches a guest without ever becoming part of a command line:
 * the exec request is the constant BOOTSTRAP below (the executor's key
 * install, with a fixed script, has a constant of its own), and everything that
 * varies (the script, its environment, the user to run as, the time limit)
 * arrives on stdin as a small tar archive of files that BOOTSTRAP unpacks into
 * a fresh private temp directory. Values only ever meet a shell inside single
 * quotes in the env file, and names are checked against ENV_NAME.
 */

export const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/**
 * The fixed command line (POSIX sh). `self` runs as the login user; any other
 * user goes through `sudo -n -H -u`, which resets the environment — so the env
 * file is sourced after the switch. GNU `timeout` kills the whole process
 * group, which is what ends a runaway script on a real VM (sshd delivers a
 * channel signal to the top process only).
 *
 * It runs for every script labvirt sends a guest (on a claim's path, the
 * lab's setup steps and the tools inventory; the key installs have a
 * constant command of their own), so it starts as few processes as it can: `tar -p` gives each file
 * the mode the bundle names, and for `student` the bundle's `./` entry opens
 * the directory to them (makeBundle), so no `chmod` runs; and the
 * executor says `self` whenever the user asked for is the login user, so
 * no `id` runs either.
 */
export const BOOTSTRAP = [
  'umask 077',
  'd=$(mktemp -d "${TMPDIR:-/tmp}/labvirt.XXXXXXXXXX") || exit 125',
  `trap 'rm -rf -- "$d"' EXIT`,
  `trap 'exit 143' HUP INT TERM`,
  'tar -x -p -f - -C "$d" 2>/dev/null || { echo "labvirt: could not unpack the script bundle" >&2; exit 125; }',
  'exec </dev/null',
  // `read`, not `$(cat …)`: a shell builtin, two processes fewer on every command.
  `IFS= read -r u < "$d/user"; IFS= read -r t < "$d/timeout"`,
  `case $u in ''|*[!a-z0-9_-]*) exit 125;; esac`,
  `case $t in ''|*[!0-9]*) exit 125;; esac`,
  `r='set -a; . "$1"; set +a; exec /bin/bash "$2"'`,
  'if [ "$u" = self ]; then set -- /bin/bash -c "$r" labvirt "$d/env" "$d/script"',
  'else set -- sudo -n -H -u "$u" -- /bin/bash -c "$r" labvirt "$d/env" "$d/script"; fi',
  // In the background so a TERM to this shell (a channel signal) can end the script's whole group at once.
  'timeout -s TERM -k 5 "$t" "$@" &',
  'p=$!',
  `trap 'kill -TERM -- -"$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; exit 143' HUP INT TERM`,
  'wait "$p"',
].join('\n');

export class InvalidEnvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidEnvError';
  }
}

/** `NAME='value'` lines; a `'` inside a value becomes `'\''`. */
export function renderEnvFile(env: Record<string, string>): string {
  let out = '';
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name))
      throw new InvalidEnvError(`invalid environment variable name ${JSON.stringify(name)}`);
    if (typeof value !== 'string') throw new InvalidEnvError(`${name}: value must be a string`);
    if (value.includes('\0')) throw new InvalidEnvError(`${name}: value contains a NUL byte`);
    out += `${name}='${value.replaceAll("'", `'\\''`)}'\n`;
  }
  return out;
}

export interface BundleInput {
  script: string;
  env: Record<string, string>;
  /** `self` or a guest user name. */
  user: string;
  timeoutSeconds: number;
}

export function makeBundle(input: BundleInput): Buffer {
  if (!USER_NAME.test(input.user))
    throw new InvalidEnvError(`invalid user ${JSON.stringify(input.user)}`);
  // Run as another user (through sudo), the script and its env must be
  // readable by that user: the directory opens to search (not listing) and
  // the two files to reading. Run as the login user, or as root (who reads
  // them anyway), nothing opens: a check's script stays unreadable to the
  // student who is logged in while it runs.
  const other = input.user !== 'self' && input.user !== 'root';
  const shared = other ? 0o644 : 0o600;
  return tar([
    ...(other ? [{ name: './', data: Buffer.alloc(0), mode: 0o711, directory: true }] : []),
    { name: 'env', data: Buffer.from(renderEnvFile(input.env)), mode: shared },
    { name: 'script', data: Buffer.from(input.script), mode: shared },
    { name: 'user', data: Buffer.from(input.user), mode: 0o600 },
    {
      name: 'timeout',
      data: Buffer.from(String(Math.max(1, Math.ceil(input.timeoutSeconds)))),
      mode: 0o600,
    },
  ]);
}

export interface TarEntry {
  name: string;
  data: Buffer;
  /** Permission bits (GNU tar applies them as they are with `-p`). */
  mode: number;
  directory?: boolean;
}

/** A minimal ustar writer for a few small regular files (and `./`). */
export function tar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { name, data, mode, directory } of entries) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    h.write(mode.toString(8).padStart(7, '0') + '\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write(
      Math.floor(Date.now() / 1000)
        .toString(8)
        .padStart(11, '0') + '\0',
      136,
    );
    h.write('        ', 148);
    h.write(directory ? '5' : '0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  const body = Buffer.concat(blocks);
  const record = 10240;
  return Buffer.concat([body, Buffer.alloc((record - (body.length % record)) % record)]);
}
