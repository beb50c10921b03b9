import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  HELPER_SOURCE,
  startSpawner,
  type HelperLaunch,
  type Spawner,
  type SpawnerOptions,
} from './spawner.js';
import { installWithApt } from '../../host-packages/index.js';

/**
 * Sim guests run in Linux namespaces made by bubblewrap (`bwrap`, Debian's
 * `bubblewrap` package): a guest's sandbox directory is its `/`, the host's
 * `/usr` is mounted read-only (with the usual `/bin`, `/lib*`, `/sbin`
 * symlinks), and it has its own user, mount, PID, IPC, UTS (hostname = the
 * VM's name) and network namespaces. Nothing else of the host is visible: not
 * labvirt's config, token or keys, not other guests' directories, not Redis.
 *
 * One helper process per guest runs inside the namespaces and starts the
 * guest's commands (see spawner.ts); it also opens and accepts the guest's
 * TCP connections inside the guest's network namespace, so the simulator
 * decides what a guest can reach (its env's nodes' SSH, its student API
 * server) and can reach what the guest listens on.
 */

/** Where the sim's own tools (`sudo`, `ssh`, `kubectl`) appear inside a guest. */
export const GUEST_TOOLS_DIR = '/opt/labvirt-sim/bin';

const BWRAP = ['/usr/bin/bwrap', '/bin/bwrap', '/usr/local/bin/bwrap'];

export interface SandboxSupport {
  /** The bwrap binary when namespaces work here. */
  bwrap?: string;
  /** Why guests cannot be sandboxed (when `bwrap` is unset). */
  reason?: string;
}

let support: SandboxSupport | undefined;

/** Whether bwrap exists and can make the namespaces a guest needs (checked once per process). */
export function sandboxSupport(): SandboxSupport {
  if (support) return support;
  // Like redis-server: installed with apt-get when missing and this process is root.
  const installFailed = BWRAP.some((p) => existsSync(p)) ? undefined : installWithApt('bubblewrap');
  const bwrap = BWRAP.find((p) => existsSync(p));
  if (!bwrap) {
    support = {
      reason:
        `bubblewrap (bwrap) is not installed and labvirt cannot install it here (${installFailed ?? 'apt-get finished but bwrap is still missing'}); ` +
        'install it (Debian/Ubuntu: sudo apt-get install bubblewrap)',
    };
    return support;
  }
  try {
    execFileSync(
      bwrap,
      [
        ...namespaceArgs('probe'),
        '--ro-bind',
        '/usr',
        '/usr',
        ...SHELL_LINKS,
        '--',
        '/usr/bin/true',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 },
    );
    support = { bwrap };
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    support = {
      reason:
        `bwrap cannot create the namespaces a guest needs${stderr ? ` (${stderr})` : ''}; ` +
        'unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, ' +
        'or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04)',
    };
  }
  return support;
}

const SHELL_LINKS = [
  '--symlink',
  'usr/bin',
  '/bin',
  '--symlink',
  'usr/sbin',
  '/sbin',
  '--symlink',
  'usr/lib',
  '/lib',
  '--symlink',
  'usr/lib64',
  '/lib64',
];

function namespaceArgs(hostname: string): string[] {
  return [
    '--unshare-user',
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-net',
    '--unshare-cgroup-try',
    // The guest's users are root in their own user namespace, as on a VM.
    '--uid',
    '0',
    '--gid',
    '0',
    '--hostname',
    hostname,
    '--die-with-parent',
    '--new-session',
  ];
}

/** Host files a shell and its tools need that hold nothing of labvirt's (symlinks and caches). */
const HOST_ETC = ['/etc/alternatives', '/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d'];

export interface GuestSandboxOptions {
  /** The guest's root directory on the host. */
  root: string;
  hostname: string;
  /** The guest's login users (cloud-init's), besides root, student and labvirt. */
  users?: readonly string[];
  /** A host directory mounted read-only at GUEST_TOOLS_DIR. */
  toolsDir: string;
  /** Host files mounted read-only at a path under GUEST_TOOLS_DIR (e.g. kubectl). */
  tools?: Record<string, string>;
}

/** The files a minimal Debian-like root needs to run a shell, ssh and kubectl (idempotent). */
export async function prepareGuestRoot(
  root: string,
  hostname: string,
  users: readonly string[] = [],
): Promise<void> {
  for (const dir of ['etc', 'tmp', 'root', 'home', 'var/tmp', 'run', 'opt/labvirt-sim/bin']) {
    await mkdir(join(root, dir), { recursive: true });
  }
  // The merged-/usr links a shell needs, in the guest's own root (bwrap's
  // --symlink would fail on a root that already has them).
  for (const [link, target] of [
    ['bin', 'usr/bin'] as const,
    ['sbin', 'usr/sbin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
  ]) {
    await symlink(target, join(root, link)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  // Every guest user is uid 0 in the guest's user namespace (one uid is all
  // an unprivileged user namespace maps). Other users are aliases of root
  // after it, so `chown student: f` works and uid 0 still reads as root;
  // the sudo stand-in sets USER and HOME.
  const others = [...new Set(['student', 'labvirt', ...users])].filter(
    (u) => u !== 'root' && /^[a-z_][a-z0-9_-]*$/.test(u),
  );
  const files: Record<string, string> = {
    'etc/hostname': `${hostname}\n`,
    'etc/passwd': [
      'root:x:0:0:root:/root:/bin/bash',
      ...others.map((u) => `${u}:x:0:0::/home/${u}:/bin/bash`),
      'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
      '',
    ].join('\n'),
    'etc/group': ['root:x:0:', ...others.map((u) => `${u}:x:0:`), 'nogroup:x:65534:', ''].join(
      '\n',
    ),
    'etc/nsswitch.conf': 'passwd: files\ngroup: files\nhosts: files\n',
  };
  for (const [path, content] of Object.entries(files)) {
    await writeFile(join(root, path), content);
  }
}

/**
 * The bwrap arguments that run `argv` in a guest's sandbox (after
 * `prepareGuestRoot`); the tools directory is optional for one-off commands.
 */
export function sandboxArgs(
  options: Omit<GuestSandboxOptions, 'toolsDir'> & { toolsDir?: string; cwd?: string },
  argv: string[],
): string[] {
  return [
    ...namespaceArgs(options.hostname),
    '--bind',
    options.root,
    '/',
    '--ro-bind',
    '/usr',
    '/usr',
    ...HOST_ETC.filter((p) => existsSync(p)).flatMap((p) => ['--ro-bind', p, p]),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    ...(options.toolsDir ? ['--ro-bind', options.toolsDir, GUEST_TOOLS_DIR] : []),
    ...Object.entries(options.tools ?? {}).flatMap(([name, hostPath]) => [
      '--ro-bind',
      hostPath,
      `${GUEST_TOOLS_DIR}/${name}`,
    ]),
    // The helper's Node, when it is not under /usr.
    ...(process.execPath.startsWith('/usr/')
      ? []
      : ['--ro-bind', process.execPath, process.execPath]),
    ...(options.cwd ? ['--chdir', options.cwd] : []),
    '--',
    ...argv,
  ];
}

/** Starts the guest's helper in its sandbox; the guest's commands and connections go through it. */
export async function startSandboxedSpawner(
  bwrap: string,
  options: GuestSandboxOptions,
  spawnerOptions: SpawnerOptions = {},
): Promise<Spawner> {
  await prepareGuestRoot(options.root, options.hostname, options.users);
  // Nothing of the simulator's environment (it may hold credentials) reaches the guest.
  const launch = (): HelperLaunch => ({
    file: bwrap,
    args: ['--info-fd', '4', ...sandboxArgs(options, [process.execPath, '-e', HELPER_SOURCE])],
    env: { PATH: '/usr/bin:/bin', NODE_OPTIONS: '' },
    infoFd: 4,
  });
  return startSpawner(launch, spawnerOptions);
}
