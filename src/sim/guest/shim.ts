import { createHash } from 'node:crypto';
import { chmod, mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A sim guest runs every command as the simulator's own OS user, so `sudo`
 * cannot really switch users. This stand-in does what matters to scripts:
 * resets the environment like sudo's env_reset and sets USER/HOME for the
 * target user inside the guest sandbox.
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
if [ "$user" = root ]; then home="\${LABVIRT_GUEST_ROOT}/root"; else home="\${LABVIRT_GUEST_ROOT}/home/$user"; fi
mkdir -p "$home"
if [ $# -eq 0 ]; then set -- /bin/sh; fi
if [ -n "\${login:-}" ]; then cd "$home" || exit 1; fi
exec env -i PATH="$PATH" LABVIRT_GUEST_ROOT="$LABVIRT_GUEST_ROOT" HOME="$home" USER="$user" LOGNAME="$user" SUDO_USER="\${USER:-}" \${TERM:+TERM="$TERM"} "$@"
`;

let shimDir: Promise<string> | undefined;

/** A directory holding the sim's `sudo`, shared by all guests of all runs (content-addressed). */
export function simBinDir(): Promise<string> {
  shimDir ??= (async () => {
    const hash = createHash('sha256').update(SUDO).digest('hex').slice(0, 12);
    const dir = join(tmpdir(), `labvirt-sim-bin-${hash}`);
    const file = join(dir, 'sudo');
    try {
      await stat(file);
      return dir;
    } catch {
      /* create it */
    }
    await mkdir(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.${Date.now()}`;
    await writeFile(tmp, SUDO);
    await chmod(tmp, 0o755);
    await rename(tmp, file);
    return dir;
  })();
  return shimDir;
}
