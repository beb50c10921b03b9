import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A sandboxed guest runs every command as root of its own user namespace,
 * so `sudo` cannot really switch users. This stand-in does what matters to
 * scripts: resets the environment like sudo's env_reset and sets USER/HOME
 * for the target user.
 */
const SUDO = `#!/bin/sh
user=root
while [ $# -gt 0 ]; do
  case "$1" in
    -n|-H|-E|-S|-k) shift ;;
    -i) login=1; shift ;;
    -u) user=$2; shift 2 ;;
    -u*) user=\${1#-u}; shift ;;
    --preserve-env=*) shift ;;
    --) shift; break ;;
    -*) echo "sudo (labvirt sim): unsupported option $1" >&2; exit 1 ;;
    *) break ;;
  esac
done
case "$user" in ''|*[!a-z0-9_-]*) echo "sudo: unknown user $user" >&2; exit 1 ;; esac
if [ "$user" = root ]; then home="\${LABVIRT_GUEST_ROOT:-}/root"; else home="\${LABVIRT_GUEST_ROOT:-}/home/$user"; fi
# Only when missing: every root command labvirt runs comes through here (a process less each).
[ -d "$home" ] || mkdir -p "$home"
if [ $# -eq 0 ]; then set -- /bin/sh; fi
if [ -n "\${login:-}" ]; then cd "$home" || exit 1; fi
exec env -i PATH="$PATH" \${LABVIRT_GUEST_ROOT:+LABVIRT_GUEST_ROOT="$LABVIRT_GUEST_ROOT"} \${LABVIRT_GUEST_ADDR:+LABVIRT_GUEST_ADDR="$LABVIRT_GUEST_ADDR"} HOME="$home" USER="$user" LOGNAME="$user" SUDO_USER="\${USER:-}" \${TERM:+TERM="$TERM"} "$@"
`;

/**
 * The guest's \`ssh\`: every guest user is uid 0 (see sandbox.ts), so OpenSSH
 * would take root's name and ~/.ssh; this logs in as the calling user with
 * that user's key and the env's known host keys, as on a real node.
 */
const SSH = `#!/bin/sh
# The destination is the first argument that is neither an option nor an
# option's value (a remote command after it may hold an @ of its own).
dest= value=
for arg in "$@"; do
  if [ -n "$value" ]; then value=; continue; fi
  case "$arg" in
    -[BbcDEeFIiJLlmOopQRSWw]) value=1 ;;
    -*) ;;
    *) dest=$arg; break ;;
  esac
done
case "$dest" in *@*) exec /usr/bin/ssh -F /etc/ssh/ssh_config -i "$HOME/.ssh/id_ed25519" "$@" ;; esac
exec /usr/bin/ssh -F /etc/ssh/ssh_config -i "$HOME/.ssh/id_ed25519" -l "\${USER:-root}" "$@"
`;

/** Where the host's kubectl is mounted over, when the sim found one. */
const NO_KUBECTL = `#!/bin/sh
echo "kubectl: not installed on this simulated node (the simulator found no kubectl binary; see docs/simulator.md)" >&2
exit 127
`;

/**
 * The guests' `systemctl`, `journalctl` and `crictl` (bash scripts in
 * ./tools, copied beside the compiled module by the build): guests run no
 * systemd and no containerd, and the host's tools would refuse, or,
 * unsandboxed, act on the host itself.
 */
const NODE_TOOLS = ['systemctl', 'journalctl', 'crictl'] as const;
const TOOLS_DIR = fileURLToPath(new URL('./tools/', import.meta.url));

export interface SimBinDirs {
  /** Mounted read-only into sandboxed guests: sudo, ssh, kubectl, systemctl, journalctl, crictl. */
  guest: string;
  /** First in PATH for unsandboxed guests: sudo, systemctl, journalctl, crictl (their ssh is the host's). */
  unsandboxed: string;
}

let dirs: Promise<SimBinDirs> | undefined;
let made: SimBinDirs | undefined;

/**
 * The sim's `sudo` and `ssh`, in a directory private to this process: a
 * fresh `mkdtemp` directory (mode 0700), so no other local user can plant or
 * change what guests run as root. Made again when it has gone (a tmp cleaner
 * on a long-running sim, or a test that removed its TMPDIR): a guest started
 * afterwards would otherwise fail to mount it.
 */
export function simBinDir(): Promise<SimBinDirs> {
  if (
    made &&
    !(existsSync(join(made.guest, 'sudo')) && existsSync(join(made.unsandboxed, 'sudo')))
  ) {
    dirs = made = undefined;
  }
  dirs ??= makeSimBinDir().then(
    (d) => (made = d),
    (err: unknown) => {
      dirs = undefined;
      throw err;
    },
  );
  return dirs;
}

const SIM_BIN_PREFIX = 'labvirt-sim-bin-';
/** In each directory: the pid and start time of the process that made it. */
const OWNER_FILE = 'owner';

/** A process as the machine knows it: its pid and start time (a reused pid has another), or undefined when gone. */
function processIdentity(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the parenthesised command name (which may hold spaces).
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return startTime ? `${pid} ${startTime}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes the directories of this user's processes that are gone: the exit
 * hook below does not run for a process killed by a signal (`kill -9` of
 * `labvirt dev`, a bench's timeout). A directory without an owner file is
 * not one of ours and is left alone.
 */
async function sweepLeftDirs(parent: string): Promise<void> {
  const uid = process.getuid?.();
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith(SIM_BIN_PREFIX)) continue;
    const dir = join(parent, name);
    try {
      if (uid !== undefined && (await stat(dir)).uid !== uid) continue;
      const owner = (await readFile(join(dir, OWNER_FILE), 'utf8')).trim();
      const pid = Number(owner.split(' ')[0]);
      if (!Number.isInteger(pid) || processIdentity(pid) === owner) continue;
      await rm(dir, { recursive: true, force: true });
    } catch {
      // not ours, or gone meanwhile
    }
  }
}

async function makeSimBinDir(): Promise<SimBinDirs> {
  await sweepLeftDirs(tmpdir());
  const top = await mkdtemp(join(tmpdir(), SIM_BIN_PREFIX));
  await chmod(top, 0o700);
  // Gone with the process: every process makes its own.
  process.once('exit', () => rmSync(top, { recursive: true, force: true }));
  const self = processIdentity(process.pid);
  if (self) await writeFile(join(top, OWNER_FILE), `${self}\n`, { mode: 0o600 });
  const guest = join(top, 'guest');
  const unsandboxed = join(top, 'unsandboxed');
  await mkdir(guest, { mode: 0o700 });
  await mkdir(unsandboxed, { mode: 0o700 });
  const write = (dir: string, name: string, content: string) =>
    writeFile(join(dir, name), content, { mode: 0o755 });
  await write(guest, 'sudo', SUDO);
  await write(guest, 'ssh', SSH);
  await write(guest, 'kubectl', NO_KUBECTL);
  await write(unsandboxed, 'sudo', SUDO);
  for (const name of NODE_TOOLS) {
    const text = await readFile(join(TOOLS_DIR, name), 'utf8');
    await write(guest, name, text);
    await write(unsandboxed, name, text);
  }
  return { guest, unsandboxed };
}
