import type { Duplex } from 'node:stream';
import ssh2, { type Client, type ClientChannel } from 'ssh2';
import { NOTICES_SUBSYSTEM } from '../ssh/index.js';

/** Where the web terminals enter: the SSH gateway, like any student's SSH client. */
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
   * When the gateway runs in this process: a stream to it, used instead of a
   * TCP connection to host:port (same SSH login and rules, no kernel round trip).
   */
  connectInProcess?: () => Duplex;
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
  /** The guest shell's channel: the student's keystrokes go in, its output comes out (stdout and stderr). */
  readonly stream: ClientChannel;
  /**
   * The gateway's notices for a shell reached through a jump (worker tabs):
   * the same lines the gateway writes into a control-plane shell's stderr.
   */
  readonly notices?: ClientChannel;
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
  const { gateway, node } = options;
  const front = await connect({
    ...(gateway.connectInProcess
      ? { sock: gateway.connectInProcess() }
      : { host: gateway.host, port: gateway.port }),
    username: options.sessionId,
    privateKey: gateway.privateKey,
    hostPublicKey: gateway.hostPublicKey,
  });
  const clients: Client[] = [front];
  const closeAll = () => {
    for (const c of clients) c.end();
  };
  try {
    let shellHost = front;
    if (node !== 'control-plane') {
      const sock = await new Promise<ClientChannel>((resolve, reject) =>
        front.forwardOut('127.0.0.1', 0, node, 22, (err, s) => (err ? reject(err) : resolve(s))),
      );
      const identity = await gateway.guestIdentity?.(options.sessionId);
      shellHost = await connect({
        sock,
        username: 'student',
        privateKey: identity?.privateKey ?? gateway.privateKey,
        hostPublicKey: identity?.hostKeys[node],
      });
      clients.push(shellHost);
    }
    const pty = { term: 'xterm-256color', cols: options.cols, rows: options.rows };
    // tmux keeps the shell through a dropped connection; asked first, cheaply,
    // because a guest without it would answer the attach with an error.
    const persistent =
      options.persistentShells !== false &&
      (await exitCode(shellHost, 'tmux -V').catch(() => undefined)) === 0;
    const stream = await new Promise<ClientChannel>((resolve, reject) => {
      const opened = (err: Error | undefined, s: ClientChannel) => (err ? reject(err) : resolve(s));
      if (persistent) shellHost.exec(persistentShellCommand(node), { pty }, opened);
      else shellHost.shell(pty, opened);
    });
    // A worker's shell is a jump: the gateway's notices come on a channel of their own.
    const notices =
      node === 'control-plane'
        ? undefined
        : await new Promise<ClientChannel | undefined>((resolve) =>
            front.subsys(NOTICES_SUBSYSTEM, (err, s) => resolve(err ? undefined : s)),
          );
    let closed = false;
    const listeners: ((reason: string) => void)[] = [];
    let reason = 'the connection to your environment was closed';
    const finish = () => {
      if (closed) return;
      closed = true;
      closeAll();
      for (const l of listeners) l(reason);
    };
    stream.on('close', finish);
    for (const c of clients) {
      c.on('close', finish);
      c.on('error', (err) => (reason = err.message));
    }
    return {
      stream,
      notices,
      persistent,
      notice: !options.resume
        ? undefined
        : persistent
          ? 'Reconnected: your shell kept running while the connection was down.'
          : 'The connection dropped: this is a fresh shell (the previous one ended with the connection; ' +
            'with tmux installed on the node, a shell outlives a dropped connection).',
      resize: (cols, rows) => stream.setWindow(rows, cols, 0, 0),
      close: () => {
        reason = 'closed';
        finish();
      },
      onClose: (l) => (closed ? l(reason) : listeners.push(l)),
    };
  } catch (err) {
    closeAll();
    throw err;
  }
}

/** Runs a command without a terminal and resolves with its exit code (null: killed by a signal). */
function exitCode(client: Client, command: string): Promise<number | null> {
  return new Promise((resolve, reject) =>
    client.exec(command, (err, channel) => {
      if (err) return reject(err);
      let code: number | null = null;
      channel.on('exit', (c: number | null) => (code = c));
      channel.on('close', () => resolve(code));
      channel.resume();
      channel.stderr.resume();
    }),
  );
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
    client.once('ready', () => {
      // Keystrokes are tiny packets: sent at once, not held back by Nagle's algorithm.
      client.setNoDelay(true);
      resolve(client);
    });
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
      // The gateway's own key, or the worker's as its env's identity names it.
      hostVerifier: (key: Buffer) => !expected || expected.equals(key),
    });
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
