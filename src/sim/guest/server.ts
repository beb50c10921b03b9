import { existsSync, mkdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import ssh2, { type Connection, type ServerChannel, type PseudoTtyInfo } from 'ssh2';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { Server, utils } = ssh2;
import {
  generateKeyPair,
  matchKey,
  parseAuthorizedKey,
  type GuestResolver,
} from '../../ssh/index.js';
import { applyWriteFiles, keysFromUserData, writeFilesFromUserData } from './cloudinit.js';
import { serveSftp } from './sftp.js';
import { simBinDir } from './shim.js';
import { sharedSpawner, type SpawnedCommand } from './spawner.js';
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
}

export interface Guest {
  readonly port: number;
  readonly hostPublicKey: string;
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
  const hostKey = opts.hostKey ?? generateKeyPair().private;
  const parsedHost = utils.parseKey(hostKey);
  if (parsedHost instanceof Error) throw parsedHost;
  const cloudKeys = new Map(
    [...keysFromUserData(opts.userData)].map(([user, lines]) => [
      user,
      lines.map(parseAuthorizedKey).filter((k) => k !== undefined),
    ]),
  );
  const binDir = await simBinDir();
  const sandbox = opts.sandboxRoot;
  await applyWriteFiles(sandbox, writeFilesFromUserData(opts.userData));
  const clients = new Set<Connection>();
  const children = new Set<SpawnedCommand>();
  const spawner = sharedSpawner();
  const sockets = new Set<Socket>();

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

  const server = new Server({ hostKeys: [hostKey] }, (client) => {
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
          const hostHome = join(sandbox, home);
          await mkdir(hostHome, { recursive: true });
          let proc: SpawnedCommand;
          try {
            proc = await spawner.spawn(argv[0] as string, argv.slice(1), {
              cwd: hostHome,
              env: {
                PATH: `${binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
                HOME: hostHome,
                USER: user,
                LOGNAME: user,
                SHELL: '/bin/sh',
                LABVIRT_GUEST_ROOT: sandbox,
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
          channel.pipe(proc.stdin!);
          proc.stdin!.on('error', () => undefined);
          channel.on('close', () => proc.killGroup('SIGHUP'));
          proc.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
            children.delete(proc);
            if (signal) channel.exit(signal.replace(/^SIG/, ''), false, '');
            else channel.exit(code ?? 0);
            channel.end();
          });
        };
        session.on('exec', (accept, _reject, info) => {
          const channel = accept();
          run(channel, ['/bin/sh', '-c', info.command]).catch(() => channel.close());
        });
        session.on('shell', (accept) => {
          const channel = accept();
          let argv = ['/bin/sh', '-i'];
          if (pty && HAS_SCRIPT) {
            const rows = Math.max(1, Math.min(1000, pty.rows | 0 || 24));
            const cols = Math.max(1, Math.min(1000, pty.cols | 0 || 80));
            argv = [
              '/usr/bin/script',
              '-qfec',
              `stty rows ${rows} cols ${cols}; exec /bin/sh -i`,
              '/dev/null',
            ];
          }
          run(channel, argv).catch(() => channel.close());
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
        forwardTarget(info.destIP, info.destPort).then(
          (to) => {
            if (!to) return reject();
            const sock = connect(to.port, to.host);
            sockets.add(sock);
            sock.once('connect', () => {
              const channel = accept();
              channel.pipe(sock).pipe(channel);
              channel.on('close', () => sock.destroy());
              sock.on('close', () => channel.close());
            });
            sock.on('error', () => reject());
            sock.on('close', () => sockets.delete(sock));
          },
          () => reject(),
        );
      });
    });
  });

  async function forwardTarget(ip: string, port: number) {
    if (ip === 'localhost' || ip === '127.0.0.1' || ip === '::1' || ip === opts.ip) {
      if (port === 22) return { host: opts.listen?.host ?? '127.0.0.1', port: guestPort };
      return opts.forwardLocalPort?.(port);
    }
    return opts.resolvePeer?.(ip, port);
  }

  const guestPort = await listenWithin(server, opts.listen);

  let readyTimer: NodeJS.Timeout | undefined;
  if (opts.markReadyAutomatically !== false) {
    readyTimer = setTimeout(() => {
      const dir = join(sandbox, 'var', 'lib', 'labvirt');
      mkdir(dir, { recursive: true })
        .then(() => writeFile(join(dir, 'ready'), `${opts.vmiName}\n`))
        .catch(() => undefined);
    }, opts.bootstrapDelayMs);
    readyTimer.unref();
  }

  return {
    port: guestPort,
    hostPublicKey: `${parsedHost.type} ${parsedHost.getPublicSSH().toString('base64')}`,
    async stop() {
      if (readyTimer) clearTimeout(readyTimer);
      for (const c of children) c.killGroup('SIGKILL');
      for (const s of sockets) s.destroy();
      for (const c of clients) c.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a terminal sends for a signal, so the pty's line discipline delivers it to the foreground job. */
const PTY_KEYS: Record<string, string> = { INT: '\x03', QUIT: '\x1c', TSTP: '\x1a' };
