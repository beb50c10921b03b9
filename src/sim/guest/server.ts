import { existsSync, mkdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import ssh2, { type Connection, type ServerChannel, type PseudoTtyInfo } from 'ssh2';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { Server, utils } = ssh2;
import { preparedSigningKey } from '../../ssh/key-objects.js';
import {
  generateKeyPair,
  matchKey,
  parseAuthorizedKey,
  type GuestResolver,
} from '../../ssh/index.js';
import {
  hostKeyFromUserData,
  applyWriteFiles,
  keysFromUserData,
  writeFilesFromUserData,
} from './cloudinit.js';
import { serveSftp } from './sftp.js';
import {
  GUEST_TOOLS_DIR,
  sandboxSupport,
  startSandboxedSpawner,
  type SandboxSupport,
} from './sandbox.js';
import { simBinDir } from './shim.js';
import { sharedSpawner, type SpawnedCommand, type Spawner } from './spawner.js';
import { listenWithin, type ListenSpec } from '../listen.js';

export interface GuestOptions {
  namespace: string;
  vmiName: string;
  ip: string;
  role: 'control-plane' | 'worker';
  userData: string;
  sandboxRoot: string;
  bootstrapDelayMs: number;
  markReadyAutomatically?: boolean;
  forwardLocalPort?: (port: number) => Promise<{ host: string; port: number } | undefined>;
  resolvePeer?: GuestResolver;
  hostKey?: string | Buffer;
  /**
   * The loopback address that stands for this guest's own network interface:
   * commands get it as `LABVIRT_GUEST_ADDR` and bind their listeners to it, so
   * two guests can both listen on the same port (as two VMs can).
   */
  listenAddress?: string;
  /** Where its sshd listens (default 127.0.0.1, any port). */
  listen?: ListenSpec;
  /** The guest's hostname (default: the VMI's name). */
  hostname?: string;
  /** A kubectl binary on the host, mounted read-only into the sandbox. */
  kubectl?: string;
  /**
   * How long each command (exec or shell) waits before it starts, read at
   * each command: the sim's `slowGuestCommandsMs` fault, a guest starved of
   * CPU. A command whose channel closes while it waits never starts.
   */
  commandDelayMs?: () => number;
  /**
   * Run commands directly on the host when bubblewrap's namespaces are not
   * available (a guest shell is then a shell of the simulator's OS user,
   * seeing all of its files). Without it such a guest refuses to start.
   */
  allowUnsandboxed?: boolean;
  /**
   * Let a sandboxed guest's helper process go after this long idle (no
   * command, no process of the guest left, nothing on its way); the next
   * command, connection or listener starts it again. Its files stay; a
   * process it leaves running keeps it. Unset or 0: it stays.
   */
  idleStopMs?: number;
}

/** Thrown when a guest cannot be sandboxed and running it unsandboxed was not allowed. */
export class GuestSandboxError extends Error {}

/**
 * Whether guests can start here: sandboxed when bubblewrap works, otherwise
 * only when `allowUnsandboxed` says so; throws GuestSandboxError saying why not.
 */
export function checkGuestSandbox(allowUnsandboxed: boolean): SandboxSupport {
  const support = sandboxSupport();
  if (!support.bwrap && !allowUnsandboxed) {
    const who = process.getuid?.() === 0 ? 'root' : "the simulator's own OS user";
    throw new GuestSandboxError(
      `refusing to start sim guests without a sandbox: ${support.reason}. Unsandboxed, a ` +
        `student's shell in a guest runs as ${who} on this machine and can read labvirt's ` +
        "token and keys, other guests' files and Redis; to run guests unsandboxed anyway " +
        '(a disposable, single-user machine only), set LABVIRT_SIM_UNSANDBOXED_GUESTS=1',
    );
  }
  return support;
}

export interface Guest {
  readonly port: number;
  readonly hostPublicKey: string;
  /** True when its commands run in their own namespaces (see sandbox.ts). */
  readonly sandboxed: boolean;
  /** A connection to what a command in the guest listens on at its own address and `port`. */
  connect(port: number): Promise<Socket>;
  /**
   * Lets commands in the guest reach `host:port` (an address of its env: a
   * peer node's SSH, the student API server): connections there go to
   * whatever `target` names at the time (none: closed). Unsandboxed guests
   * share the host's network and reach everything already.
   */
  allowOutbound(
    host: string,
    port: number,
    target: () => { host: string; port: number } | undefined,
  ): void;
  /** Writes cloud-init's readiness marker, as the role script does once its node is up. */
  markReady(): Promise<void>;
  stop(): Promise<void>;
}

/** Like sshd's AcceptEnv. */
const ACCEPT_ENV = /^(LABVIRT_[A-Z0-9_]*|LAB_[A-Z0-9_]*|LANG|LC_[A-Z_]+)$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const HAS_SCRIPT = existsSync('/usr/bin/script');

/**
 * A simulated VM's sshd: publickey auth from cloud-init and authorized_keys,
 * exec/shell with a real /bin/sh in the guest's sandbox, SFTP confined to the
 * sandbox, and direct-tcpip to the guest's own ports and its env's peers.
 */
export async function startGuest(opts: GuestOptions): Promise<Guest> {
  // As cloud-init's `ssh_keys` does on a real VM: the host key labvirt gave the node, else a fresh one.
  const hostKey = opts.hostKey ?? hostKeyFromUserData(opts.userData) ?? generateKeyPair().private;
  const parsedHost = utils.parseKey(hostKey);
  if (parsedHost instanceof Error) throw parsedHost;
  const cloudKeys = new Map(
    [...keysFromUserData(opts.userData)].map(([user, lines]) => [
      user,
      lines.map(parseAuthorizedKey).filter((k) => k !== undefined),
    ]),
  );
  const bins = await simBinDir();
  const sandbox = opts.sandboxRoot;
  const support = checkGuestSandbox(opts.allowUnsandboxed ?? false);
  const sandboxed = support.bwrap !== undefined;
  const spawner: Spawner = support.bwrap
    ? await startSandboxedSpawner(
        support.bwrap,
        {
          root: sandbox,
          hostname: opts.hostname ?? opts.vmiName,
          users: [...cloudKeys.keys()],
          toolsDir: bins.guest,
          tools: opts.kubectl ? { kubectl: opts.kubectl } : {},
        },
        { idleStopMs: opts.idleStopMs },
      )
    : sharedSpawner();
  await applyWriteFiles(sandbox, writeFilesFromUserData(opts.userData));
  const clients = new Set<Connection>();
  const children = new Set<SpawnedCommand>();
  const sockets = new Set<Socket>();
  const ownAddress = opts.listenAddress ?? '127.0.0.1';

  /**
   * Pipes two sockets together, both tracked so stop() ends them. A relay
   * with Nagle's algorithm on holds a reply's second small write until the
   * first is acknowledged (up to 40 ms); the network it stands for (a veth,
   * iptables) holds nothing, so both sides have it off.
   */
  function splice(a: Socket, b: Socket): void {
    for (const s of [a, b]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    a.on('close', () => b.destroy());
    b.on('close', () => a.destroy());
    a.pipe(b).pipe(a);
    a.resume();
    b.resume();
  }

  function connectOwn(port: number): Promise<Socket> {
    if (sandboxed) return spawner.connect(ownAddress, port);
    return new Promise((resolve, reject) => {
      const sock = connect(port, ownAddress);
      sock.once('connect', () => resolve(sock));
      sock.once('error', reject);
    });
  }

  function allowOutbound(
    host: string,
    port: number,
    target: () => { host: string; port: number } | undefined,
  ): void {
    if (!sandboxed) return;
    spawner.listen(host, port, (inside) => {
      const to = target();
      if (!to) return inside.destroy();
      const outside = connect(to.port, to.host);
      outside.once('connect', () => splice(inside, outside));
      outside.once('error', () => inside.destroy());
    });
  }

  async function allowedKeys(user: string) {
    const keys = [...(cloudKeys.get(user) ?? [])];
    try {
      const text = await readFile(join(sandbox, 'home', user, '.ssh', 'authorized_keys'), 'utf8');
      for (const line of text.split('\n')) {
        const k = parseAuthorizedKey(line);
        if (k) keys.push(k);
      }
    } catch {
      /* no file: cloud-init keys only */
    }
    return keys;
  }

  // Signed with a key object made once, as sshd signs with the key it loaded:
  // ssh2 would decode the PEM at every handshake (≈ 1 ms each, the
  // simulator's largest crypto cost in a claim; docs/benchmarks.md).
  const signingHostKey = preparedSigningKey(hostKey, 'the guest host key');
  const server = new Server({ hostKeys: [{ key: signingHostKey }] }, (client) => {
    // ssh2 writes each message on its own (OpenSSH's sshd sends what one
    // turn produced in one write): with Nagle's algorithm, a reply that
    // follows another waited for the client's delayed acknowledgement, up to
    // 40 ms per exchange, a wait of the simulator's own that no bench should
    // measure (docs/ssh.md "Nagle's algorithm"). ssh2's server connection has the
    // method; its typings do not.
    (client as Connection & { setNoDelay(noDelay: boolean): void }).setNoDelay(true);
    clients.add(client);
    let user = '';
    client.on('close', () => clients.delete(client));
    client.on('error', () => undefined);
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey' || !USER.test(ctx.username)) return ctx.reject(['publickey']);
      allowedKeys(ctx.username).then(
        (keys) => {
          if (matchKey(keys, ctx)) {
            user = ctx.username;
            ctx.accept();
          } else ctx.reject(['publickey']);
        },
        () => ctx.reject(['publickey']),
      );
    });
    client.on('ready', () => {
      const home = `/home/${user}`;
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        const env: Record<string, string> = {};
        let pty: PseudoTtyInfo | undefined;
        let child: SpawnedCommand | undefined;
        session.on('env', (accept, reject, info) => {
          if (ACCEPT_ENV.test(info.key)) {
            env[info.key] = info.val;
            accept?.();
          } else reject?.();
        });
        session.on('pty', (accept, _reject, info) => {
          pty = info;
          accept?.();
        });
        session.on('window-change', (accept) => accept?.());
        session.on('signal', (accept, _reject, info) => {
          accept?.();
          if (!child?.pid) return;
          const pc = pty ? PTY_KEYS[info.name] : undefined;
          if (pc && child.stdin?.writable) child.stdin.write(pc);
          else child.killGroup(`SIG${info.name}` as NodeJS.Signals);
        });
        const run = async (channel: ServerChannel, argv: string[]) => {
          const delayMs = opts.commandDelayMs?.() ?? 0;
          if (delayMs > 0) {
            let closed = false;
            channel.once('close', () => (closed = true));
            await new Promise((r) => setTimeout(r, delayMs));
            if (closed) return;
          }
          const hostHome = join(sandbox, home);
          await mkdir(hostHome, { recursive: true });
          const guestHome = sandboxed ? home : hostHome;
          let proc: SpawnedCommand;
          try {
            proc = await spawner.spawn(argv[0] as string, argv.slice(1), {
              cwd: guestHome,
              env: {
                PATH: `${sandboxed ? GUEST_TOOLS_DIR : bins.unsandboxed}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
                HOME: guestHome,
                USER: user,
                LOGNAME: user,
                SHELL: '/bin/sh',
                // Unsandboxed, scripts find the guest's files under this prefix.
                ...(sandboxed ? {} : { LABVIRT_GUEST_ROOT: sandbox }),
                ...(opts.listenAddress ? { LABVIRT_GUEST_ADDR: opts.listenAddress } : {}),
                ...(pty ? { TERM: pty.term || 'xterm' } : {}),
                ...env,
              },
            });
          } catch (err) {
            channel.stderr.write(`${(err as Error).message}\n`);
            channel.exit(127);
            channel.end();
            return;
          }
          child = proc;
          children.add(proc);
          proc.stdout!.pipe(channel, { end: false });
          proc.stderr!.pipe(channel.stderr, { end: false });
          // With a pty, sshd neither passes the client's EOF on (`script` would
          // type it as ^D) nor signals the command: closing the channel closes
          // the pty's master, and the kernel hangs up the terminal's session.
          // Killing `script` (the master's holder) does the same here, so a
          // program that survives hang-ups (tmux's server) keeps running.
          const onPty = pty !== undefined && HAS_SCRIPT;
          channel.pipe(proc.stdin!, { end: !onPty });
          proc.stdin!.on('error', () => undefined);
          channel.on('close', () => proc.killGroup(onPty ? 'SIGKILL' : 'SIGHUP'));
          proc.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
            children.delete(proc);
            if (signal) channel.exit(signal.replace(/^SIG/, ''), false, '');
            else channel.exit(code ?? 0);
            channel.end();
          });
        };
        /** Runs a shell command line in a pty of the requested size when one was asked for, as sshd does (`ssh -t`). */
        const withPty = (commandLine: string): string[] => {
          if (!pty || !HAS_SCRIPT) return ['/bin/sh', '-c', commandLine];
          const rows = Math.max(1, Math.min(1000, pty.rows | 0 || 24));
          const cols = Math.max(1, Math.min(1000, pty.cols | 0 || 80));
          return [
            '/usr/bin/script',
            '-qfec',
            `stty rows ${rows} cols ${cols}; ${commandLine}`,
            '/dev/null',
          ];
        };
        session.on('exec', (accept, _reject, info) => {
          const channel = accept();
          run(channel, withPty(info.command)).catch(() => channel.close());
        });
        session.on('shell', (accept) => {
          const channel = accept();
          run(channel, pty ? withPty('exec /bin/sh -i') : ['/bin/sh', '-i']).catch(() =>
            channel.close(),
          );
        });
        session.on('sftp', (accept, reject) => {
          // Synchronously: OpenSSH sends SSH_FXP_INIT without waiting for the
          // reply, and ssh2 drops data that arrives before the channel exists.
          try {
            mkdirSync(join(sandbox, home), { recursive: true });
          } catch {
            return reject();
          }
          serveSftp(accept(), sandbox, home);
        });
      });
      client.on('tcpip', (accept, reject, info) => {
        openForward(info.destIP, info.destPort).then(
          (sock) => {
            if (!sock) return reject();
            // A relay like splice's: no Nagle on the guest's side either.
            sock.setNoDelay(true);
            sockets.add(sock);
            sock.on('close', () => sockets.delete(sock));
            sock.on('error', () => undefined);
            const channel = accept();
            channel.pipe(sock).pipe(channel);
            channel.on('close', () => sock.destroy());
            sock.on('close', () => channel.close());
            sock.resume();
          },
          () => reject(),
        );
      });
    });
  });

  /** A direct-tcpip channel's other end: the guest's own port, or a peer in its env. */
  async function openForward(ip: string, port: number): Promise<Socket | undefined> {
    let to: { host: string; port: number } | undefined;
    if (ip === 'localhost' || ip === '127.0.0.1' || ip === '::1' || ip === opts.ip) {
      if (port === 22) to = { host: opts.listen?.host ?? '127.0.0.1', port: guestPort };
      else if (port !== 6443 && sandboxed) return spawner.connect(ownAddress, port);
      else to = await opts.forwardLocalPort?.(port);
    } else {
      to = await opts.resolvePeer?.(ip, port);
    }
    if (!to) return undefined;
    const target = to;
    return new Promise((resolve, reject) => {
      const sock = connect(target.port, target.host);
      sock.once('connect', () => resolve(sock));
      sock.once('error', reject);
    });
  }

  const guestPort = await listenWithin(server, opts.listen);

  const markReady = async () => {
    const dir = join(sandbox, 'var', 'lib', 'labvirt');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ready'), `${opts.vmiName}\n`);
  };
  let readyTimer: NodeJS.Timeout | undefined;
  // A marker being written when the guest stops is waited for (see stop()).
  let marking: Promise<void> | undefined;
  if (opts.markReadyAutomatically !== false) {
    readyTimer = setTimeout(() => {
      marking = markReady().catch(() => undefined);
    }, opts.bootstrapDelayMs);
    readyTimer.unref();
  }

  return {
    port: guestPort,
    hostPublicKey: `${parsedHost.type} ${parsedHost.getPublicSSH().toString('base64')}`,
    sandboxed,
    connect: connectOwn,
    allowOutbound,
    markReady,
    async stop() {
      if (readyTimer) clearTimeout(readyTimer);
      for (const c of children) c.killGroup('SIGKILL');
      for (const s of sockets) s.destroy();
      for (const c of clients) c.end();
      // The sandbox's helper ends and bwrap's PID 1 with it: every process left in the guest dies.
      if (sandboxed) await spawner.stop();
      await marking;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a terminal sends for a signal, so the pty's line discipline delivers it to the foreground job. */
const PTY_KEYS: Record<string, string> = { INT: '\x03', QUIT: '\x1c', TSTP: '\x1a' };
