import type { Duplex } from 'node:stream';
import ssh2, { type Client, type ClientChannel } from 'ssh2';
import {
  guestAlgorithms,
  NOTICES_SUBSYSTEM,
  type Gateway,
  type LocalChannel,
  type LocalPty,
} from '../ssh/index.js';

/** Where the web terminals enter: the SSH gateway, like any student's SSH client. */
/** Where the web terminals enter: the SSH gateway, as any student's SSH client does. */
export interface GatewayTarget {
  host: string;
  port: number;
  /**
   * labvirt's bridge key. The gateway accepts it for any active session
   * (see {@link withBridgeKey}); no guest trusts it.
   */
  privateKey: string;
  /** The gateway's host key (`ssh-ed25519 AAAA…`); when set, any other key is refused. */
  hostPublicKey?: string;
  /**
   * When the gateway runs in this process: its in-process sessions, used
   * instead of an SSH login over TCP to host:port (the same login check,
   * audit, idle and session-end rules; no SSH between bridge and gateway).
   */
  local?: Pick<Gateway, 'openSession'>;
  /**
   * The session env's own key and its nodes' host keys, for the hop to a
   * worker: the worker trusts only its env's key, and must show its own host
   * key. Without it, the hop uses `privateKey` and checks no host key.
   */
  guestIdentity?: (
    sessionId: string,
  ) => Promise<{ privateKey: string; hostKeys: Partial<Record<TerminalNode, string>> }>;
}

export const TERMINAL_NODES = ['control-plane', 'worker-1', 'worker-2'] as const;
export type TerminalNode = (typeof TERMINAL_NODES)[number];

export interface Terminal {
  /** The student's keystrokes, to the guest shell. */
  write(bytes: Buffer): void;
  /** The shell's output (with a pty, all of it comes here). */
  onOutput(listener: (chunk: Buffer) => void): void;
  /** The gateway's notices for this terminal (warnings before the end or an idle cut, why it closed). */
  onNotice(listener: (text: string) => void): void;
  /** Stops the shell's output until `resume` (the browser is slow to take it). */
  pause(): void;
  resume(): void;
  /** Shown once at the top of the terminal (e.g. that a fresh shell replaced a lost one). */
  readonly notice?: string;
  /** Whether the shell runs in tmux, and so outlives a dropped connection. */
  readonly persistent: boolean;
  resize(cols: number, rows: number): void;
  close(): void;
  /** Called once when the terminal is gone, with why. */
  onClose(listener: (reason: string) => void): void;
}

/** The tmux server of web terminals: a socket of its own, so its settings never touch a student's own tmux. */
const TMUX_SOCKET = 'labvirt-web';

/**
 * The command that opens, or re-attaches to, a node's tmux session for the
 * web terminal (a fixed string: `node` is one of TERMINAL_NODES). No status
 * line, so it looks like a plain shell; no alternate screen, so the
 * browser's scrollback keeps the output.
 */
export function persistentShellCommand(node: TerminalNode): string {
  return [
    `exec tmux -L ${TMUX_SOCKET} start-server`,
    'set-option -g status off',
    "set-option -g terminal-overrides 'xterm*:smcup@:rmcup@'",
    `new-session -A -s labvirt-web-${node}`,
  ].join(' \\; ');
}

/** Where a terminal's shell runs: the gateway's own session, or an SSH client of a node. */
interface ShellHost {
  shell(pty: LocalPty | undefined): Promise<LocalChannel>;
  exec(command: string, pty?: LocalPty): Promise<LocalChannel>;
}

/** How a terminal reached its node through the gateway. */
interface Route {
  host: ShellHost;
  onNotice(listener: (text: string) => void): void;
  /** Called when the way to the node is gone, with why. */
  onGone(listener: (reason: string) => void): void;
  end(): void;
}

const CLOSED = 'the connection to your environment was closed';

/**
 * Opens a shell on one node of a session through the SSH gateway: the
 * gateway authorises the session, audits the connection, cuts it when idle
 * or when the session ends. Workers are reached the way an SSH student
 * reaches them, by a jump (`direct-tcpip`) the gateway allows only to the
 * session env's own nodes.
 */
export async function openTerminal(options: {
  gateway: GatewayTarget;
  sessionId: string;
  node: TerminalNode;
  cols: number;
  rows: number;
  /** A reconnect after a drop: the student is told whether the shell is the same or a fresh one. */
  resume: boolean;
  /** Run the shell in tmux when the node has it (default true). */
  persistentShells?: boolean;
}): Promise<Terminal> {
  const { node } = options;
  const route = options.gateway.local
    ? await localRoute(options.gateway, options.gateway.local, options.sessionId, node)
    : await sshRoute(options.gateway, options.sessionId, node);
  try {
    const pty = { term: 'xterm-256color', cols: options.cols, rows: options.rows };
    // tmux keeps the shell through a dropped connection; asked first, cheaply,
    // because a guest without it would answer the attach with an error.
    const persistent =
      options.persistentShells !== false &&
      (await exitCode(route.host, 'tmux -V').catch(() => undefined)) === 0;
    const channel = persistent
      ? await route.host.exec(persistentShellCommand(node), pty)
      : await route.host.shell(pty);
    let closed = false;
    const listeners: ((reason: string) => void)[] = [];
    const finish = (reason: string) => {
      if (closed) return;
      closed = true;
      route.end();
      for (const l of listeners) l(reason);
    };
    channel.onClose(() => finish(CLOSED));
    route.onGone(finish);
    return {
      write: (bytes) => channel.write(bytes),
      onOutput: (listener) => channel.onOutput(listener),
      onNotice: (listener) => route.onNotice(listener),
      pause: () => channel.pause(),
      resume: () => channel.resume(),
      persistent,
      notice: !options.resume
        ? undefined
        : persistent
          ? 'Reconnected: your shell kept running while the connection was down.'
          : 'The connection dropped: this is a fresh shell (the previous one ended with the connection; ' +
            'with tmux installed on the node, a shell outlives a dropped connection).',
      resize: (cols, rows) => channel.resize(cols, rows),
      close: () => finish('closed'),
      onClose: (l) => (closed ? l('closed') : listeners.push(l)),
    };
  } catch (err) {
    route.end();
    throw err;
  }
}

/** The gateway in this process: its in-process session, and for a worker a jump and an SSH login there. */
async function localRoute(
  gateway: GatewayTarget,
  local: Pick<Gateway, 'openSession'>,
  sessionId: string,
  node: TerminalNode,
): Promise<Route> {
  const session = await local.openSession(sessionId);
  let worker: Client | undefined;
  try {
    if (node !== 'control-plane') {
      const sock = await session.jump(node, 22);
      worker = await loginToWorker(gateway, sessionId, node, sock);
    }
  } catch (err) {
    session.end();
    throw err;
  }
  return {
    host: worker ? sshHost(worker) : session,
    onNotice: (listener) => void session.onNotice(listener),
    onGone: (listener) => {
      session.onClose(listener);
      worker?.on('close', () => listener(CLOSED));
    },
    end: () => {
      worker?.end();
      session.end();
    },
  };
}

/** A gateway in another process: an SSH login there with the bridge key, like any student's client. */
async function sshRoute(
  gateway: GatewayTarget,
  sessionId: string,
  node: TerminalNode,
): Promise<Route> {
  const front = await connect({
    host: gateway.host,
    port: gateway.port,
    username: sessionId,
    privateKey: gateway.privateKey,
    hostPublicKey: gateway.hostPublicKey,
  });
  const clients: Client[] = [front];
  const noticeListeners: ((text: string) => void)[] = [];
  const notices = noticeLines((text) => {
    for (const l of noticeListeners) l(text);
  });
  const end = () => {
    for (const c of clients) c.end();
  };
  try {
    let host: ShellHost;
    if (node === 'control-plane') {
      // With a pty the guest's output is all on stdout: the shell's stderr
      // carries the gateway's own notices.
      host = sshHost(front, notices);
    } else {
      const sock = await new Promise<ClientChannel>((resolve, reject) =>
        front.forwardOut('127.0.0.1', 0, node, 22, (err, s) => (err ? reject(err) : resolve(s))),
      );
      const worker = await loginToWorker(gateway, sessionId, node, sock);
      clients.push(worker);
      host = sshHost(worker);
      // A worker's shell is a jump: the gateway's notices come on a channel of their own.
      const channel = await new Promise<ClientChannel | undefined>((resolve) =>
        front.subsys(NOTICES_SUBSYSTEM, (err, s) => resolve(err ? undefined : s)),
      );
      channel?.stderr.on('data', notices);
      channel?.resume();
    }
    return {
      host,
      onNotice: (listener) => void noticeListeners.push(listener),
      onGone: (listener) => {
        let reason = CLOSED;
        for (const c of clients) {
          c.on('error', (err) => (reason = err.message));
          c.on('close', () => listener(reason));
        }
      },
      end,
    };
  } catch (err) {
    end();
    throw err;
  }
}

/** The SSH login as `student` on a worker, over a jump, with the session env's own key. */
async function loginToWorker(
  gateway: GatewayTarget,
  sessionId: string,
  node: TerminalNode,
  sock: Duplex,
): Promise<Client> {
  const identity = await gateway.guestIdentity?.(sessionId);
  return connect({
    sock,
    username: 'student',
    privateKey: identity?.privateKey ?? gateway.privateKey,
    hostPublicKey: identity?.hostKeys[node],
  });
}

/** An SSH client as a shell host; its channels' stderr goes to `stderr` when given, else with the output. */
function sshHost(client: Client, stderr?: (chunk: Buffer) => void): ShellHost {
  const open = (start: (done: (err: Error | undefined, ch: ClientChannel) => void) => void) =>
    new Promise<LocalChannel>((resolve, reject) =>
      start((err, ch) => (err ? reject(err) : resolve(sshChannel(ch, stderr)))),
    );
  const ptyOf = (pty: LocalPty) => ({ ...pty, width: 0, height: 0 });
  return {
    shell: (pty) => open((done) => client.shell(pty ? ptyOf(pty) : false, done)),
    exec: (command, pty) =>
      open((done) => client.exec(command, pty ? { pty: ptyOf(pty) } : {}, done)),
  };
}

function sshChannel(ch: ClientChannel, stderr?: (chunk: Buffer) => void): LocalChannel {
  let code: number | null = null;
  let closed = false;
  ch.on('exit', (c: number | null) => (code = typeof c === 'number' ? c : null));
  ch.once('close', () => (closed = true));
  if (stderr) ch.stderr.on('data', stderr);
  return {
    write: (data) => void ch.write(data),
    onOutput: (listener) => {
      ch.on('data', listener);
      if (!stderr) ch.stderr.on('data', listener);
    },
    onClose: (listener) => (closed ? listener(code) : void ch.once('close', () => listener(code))),
    pause: () => void ch.pause(),
    resume: () => void ch.resume(),
    resize: (cols, rows) => ch.setWindow(rows, cols, 0, 0),
    close: () => void ch.close(),
  };
}

/** Splits the gateway's notices (`\r\n[labvirt] text\r\n`) into their texts. */
function noticeLines(listener: (text: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    const lines = (pending + chunk.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    // A notice is short: a line never ended is shown rather than held forever.
    if (pending.length > 4096) {
      lines.push(pending.slice(0, 4096));
      pending = '';
    }
    for (const line of lines) {
      const text = line
        .replace(/\r/g, '')
        .replace(/^\[labvirt\] /, '')
        .trim();
      if (text) listener(text);
    }
  };
}

/** Runs a command without a terminal and resolves with its exit code (null: killed by a signal). */
async function exitCode(host: ShellHost, command: string): Promise<number | null> {
  const channel = await host.exec(command);
  // Its output is not wanted, but must be read for the command to finish.
  channel.onOutput(() => undefined);
  return new Promise((resolve) => channel.onClose(resolve));
}

function connect(options: {
  host?: string;
  port?: number;
  sock?: Duplex;
  username: string;
  privateKey: string;
  hostPublicKey?: string;
}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    const expected = options.hostPublicKey ? hostKeyBlob(options.hostPublicKey) : undefined;
    client.once('ready', () => resolve(client));
    // `on`, not `once`: ssh2 can emit a second error (a connection lost
    // during the handshake), which would crash the process without a listener.
    client.on('error', reject);
    client.connect({
      host: options.host,
      port: options.port,
      sock: options.sock,
      username: options.username,
      privateKey: options.privateKey,
      readyTimeout: 20_000,
      keepaliveInterval: 15_000,
      // The cheapest safe key exchange (as for every connection labvirt makes
      // to a guest), and only the expected host key's type when one is known.
      algorithms: guestAlgorithms(options.hostPublicKey),
      // The gateway's own key, or the worker's as its env's identity names it.
      hostVerifier: (key: Buffer) => !expected || expected.equals(key),
    });
    // From the first byte: keystrokes are tiny packets, and so are the
    // handshake's messages, which ssh2 writes one by one (docs/ssh.md
    // "Nagle's algorithm"). A forwarded channel as `sock` has no such option.
    client.setNoDelay(true);
  });
}

function hostKeyBlob(publicLine: string): Buffer | undefined {
  const parsed = ssh2.utils.parseKey(publicLine);
  return parsed instanceof Error ? undefined : parsed.getPublicSSH();
}

/**
 * The gateway's directory, also accepting labvirt's own key for every active
 * session: the web terminal bridge logs in with it on a student's behalf,
 * after checking the student's cookie for that session. A gateway in
 * another process than the bridge reads the key from where the bridge's
 * process published it (`publicKey` as a function; none yet: only the
 * student's key is accepted).
 */
export function withBridgeKey<S extends { publicKeys: string[] }>(
  directory: {
    lookup(id: string): Promise<S | undefined>;
    onChange?(listener: (sessionId: string) => void): () => void;
  },
  publicKey: string | (() => Promise<string | undefined>),
): {
  lookup(id: string): Promise<S | undefined>;
  onChange?(listener: (sessionId: string) => void): () => void;
} {
  const bridgeKey = typeof publicKey === 'string' ? async () => publicKey : publicKey;
  return {
    onChange: directory.onChange?.bind(directory),
    lookup: async (id: string) => {
      const [s, key] = await Promise.all([directory.lookup(id), bridgeKey()]);
      return s && { ...s, publicKeys: key ? [...s.publicKeys, key] : s.publicKeys };
    },
  };
}
