import ssh2, { type Client, type ClientChannel } from 'ssh2';

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
  /** The guest shell: write the student's keystrokes, read its output. */
  readonly stream: ClientChannel;
  /** Shown once at the top of the terminal (e.g. that a fresh shell replaced a lost one). */
  readonly notice?: string;
  resize(cols: number, rows: number): void;
  close(): void;
  /** Called once when the terminal is gone, with why. */
  onClose(listener: (reason: string) => void): void;
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
  /** A reconnect after a drop: the student is told the shell is a fresh one. */
  resume: boolean;
}): Promise<Terminal> {
  const { gateway, node } = options;
  const front = await connect({
    host: gateway.host,
    port: gateway.port,
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
    const stream = await new Promise<ClientChannel>((resolve, reject) =>
      shellHost.shell(
        { term: 'xterm-256color', cols: options.cols, rows: options.rows },
        (err, s) => (err ? reject(err) : resolve(s)),
      ),
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
      notice: options.resume
        ? 'The connection dropped: this is a fresh shell (the previous one ended with the connection).'
        : undefined,
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

function connect(options: {
  host?: string;
  port?: number;
  sock?: ClientChannel;
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
 * after checking the student's cookie for that session.
 */
export function withBridgeKey<S extends { publicKeys: string[] }>(
  directory: { lookup(id: string): Promise<S | undefined> },
  publicKey: string,
): { lookup(id: string): Promise<S | undefined> } {
  return {
    lookup: async (id: string) => {
      const s = await directory.lookup(id);
      return s && { ...s, publicKeys: [...s.publicKeys, publicKey] };
    },
  };
}
