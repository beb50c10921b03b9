import { createServer as createTcpServer } from 'node:net';
import ssh2, {
  type ClientChannel,
  type Connection,
  type PseudoTtyInfo,
  type ServerChannel,
} from 'ssh2';
import type { Logger } from '../log/index.js';
import {
  NOTICES_SUBSYSTEM,
  type Gateway,
  type GatewayOptions,
  type GatewaySession,
} from './gateway-api.js';
import { openLocalSession } from './gateway-local.js';
import { GatewayLogin, SESSION_NAME } from './gateway-login.js';
import { HostKeyPins } from './hostkeys.js';
import { fingerprint, matchKey } from './keys.js';
import { preparedSigningKey } from './key-objects.js';
import { StudentConnection, type ConnectionRules } from './student-connection.js';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { Server } = ssh2;

/**
 * Counts connections that have not logged in yet, in total and per source
 * address, so a flood of half-open handshakes cannot use up the gateway.
 */
class UnauthenticatedCaps {
  private total = 0;
  private readonly bySource = new Map<string, number>();
  constructor(
    private readonly maxTotal: number,
    private readonly maxPerSource: number,
  ) {}
  /** Takes a place for `source`, or says why there is none. */
  admit(source: string): 'total' | 'source' | undefined {
    const mine = this.bySource.get(source) ?? 0;
    if (this.total >= this.maxTotal) return 'total';
    if (mine >= this.maxPerSource) return 'source';
    this.total++;
    this.bySource.set(source, mine + 1);
    return undefined;
  }
  release(source: string): void {
    const mine = this.bySource.get(source) ?? 0;
    if (mine <= 0) return;
    this.total--;
    if (mine === 1) this.bySource.delete(source);
    else this.bySource.set(source, mine - 1);
  }
}

/** How a notice reads in a terminal's stderr. */
function note(text: string): string {
  return `\r\n[labvirt] ${text}\r\n`;
}

/**
 * One entry point for every student: `ssh <session>@gateway` with the
 * session's key lands on the env's control plane as `student`; `-J` jumps
 * reach only the env's own nodes on port 22. The web terminal bridge of the
 * same process enters through {@link Gateway.openSession}, under the same
 * rules (src/ssh/student-connection.ts holds them once for both).
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const log = options.logger;
  const audit = options.audit ?? log;
  const now = options.now ?? Date.now;
  const idleMs = options.idleTimeoutMs ?? 30 * 60_000;
  const authTimeoutMs = options.authTimeoutMs ?? 30_000;
  const login = new GatewayLogin({
    directory: options.directory,
    log,
    audit,
    now,
    retryBudgetMs: Math.min(options.lookupRetryBudgetMs ?? 15_000, authTimeoutMs),
    lookupTimeoutMs: options.lookupTimeoutMs ?? 5000,
  });
  const rules: ConnectionRules = {
    directory: options.directory,
    log,
    audit,
    now,
    idleMs,
    warnMs: Math.min(options.warnBeforeMs ?? 60_000, Math.floor(idleMs / 2)),
    recheckMs: options.recheckMs ?? 30_000,
    guestUser: options.guestUser ?? 'student',
    clientKey: preparedSigningKey(options.clientKey, "the gateway's client key"),
    identity: options.identity,
    resolve: options.resolve,
    pins: new HostKeyPins(),
    onHostKeyMismatch: options.onHostKeyMismatch,
    rechecks: new Map(),
    open: new Set(),
  };
  const stopWatching = options.directory.onChange?.((sessionId) => {
    for (const recheck of rules.rechecks.get(sessionId) ?? []) recheck();
  });
  const caps = new UnauthenticatedCaps(
    options.maxUnauthenticated ?? 512,
    options.maxUnauthenticatedPerSource ?? 64,
  );
  // Sockets still in their handshake, keyed for the release when they log in
  // or go; `seen` tells the socket's own timer that ssh2's handler (and its
  // audited authentication timeout) has taken over.
  const pending = new Map<string, { release: () => void; seen: () => void }>();
  let refusedSinceReport = 0;
  let lastRefusalReport = 0;
  const reportRefusal = (sourceIp: string, cap: 'total' | 'source') => {
    // One line a second at most: a flood must not become a flood of log lines.
    refusedSinceReport++;
    const t = now();
    if (t - lastRefusalReport < 1000) return;
    lastRefusalReport = t;
    audit?.warn(
      {
        audit: 'ssh.connection.refused',
        source: sourceIp,
        reason:
          cap === 'total'
            ? 'too many connections not yet logged in'
            : 'too many connections not yet logged in from this address',
        refusedSinceLastReport: refusedSinceReport,
      },
      'ssh connection refused: unauthenticated connection cap',
    );
    refusedSinceReport = 0;
  };

  const server = new Server(
    { hostKeys: [{ key: preparedSigningKey(options.hostKey, 'the gateway host key') }] },
    (client, info) => {
      const source = `${info.ip}:${info.port}`;
      const handshake = pending.get(source);
      handshake?.seen();
      serveSshClient(client, {
        conn: new StudentConnection(rules, source, () => client.end()),
        login,
        audit,
        log,
        authTimeoutMs,
        releaseCap: handshake?.release ?? (() => undefined),
      });
    },
  );

  // Our own listener in front of ssh2's, so a connection over the caps is
  // closed before ssh2 spends a key exchange on it.
  const listener = createTcpServer((socket) => {
    const sourceIp = socket.remoteAddress ?? 'unknown';
    const over = caps.admit(sourceIp);
    if (over) {
      reportRefusal(sourceIp, over);
      socket.destroy();
      return;
    }
    // ssh2 writes each SSH message on its own: with Nagle's algorithm a
    // student's login waited on delayed acknowledgements (docs/ssh.md
    // "Nagle's algorithm"), and keystrokes are tiny packets.
    socket.setNoDelay(true);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      caps.release(sourceIp);
    };
    const key = `${sourceIp}:${socket.remotePort}`;
    let seenByHandler = false;
    pending.set(key, { release, seen: () => (seenByHandler = true) });
    socket.once('close', () => {
      release();
      pending.delete(key);
    });
    // A connection that never finishes its SSH greeting is not seen by the
    // handler above, so the timeout is enforced on the socket too (audited
    // here; once the handler has it, its own timer ends it and audits).
    const greetTimer = setTimeout(() => {
      if (released || seenByHandler) return;
      audit?.warn(
        {
          audit: 'ssh.auth.timeout',
          source: `${sourceIp}:${socket.remotePort}`,
          timeoutMs: authTimeoutMs,
          stage: 'greeting',
        },
        'ssh connection closed: no SSH greeting in time',
      );
      socket.destroy();
    }, authTimeoutMs);
    greetTimer.unref();
    socket.once('close', () => clearTimeout(greetTimer));
    server.injectSocket(socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(options.port ?? 0, options.host ?? '0.0.0.0', () => resolve());
  });
  const port = (listener.address() as { port: number }).port;
  const parsedHostKey = ssh2.utils.parseKey(options.hostKey);
  log?.info(
    { port, hostKey: parsedHostKey instanceof Error ? undefined : fingerprint(parsedHostKey) },
    'ssh gateway listening',
  );
  return {
    port,
    get connections() {
      return rules.open.size;
    },
    openSession: (sessionId) => openLocalSession(rules, login, sessionId),
    async close() {
      stopWatching?.();
      for (const c of [...rules.open]) c.end();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

/** Serves one SSH client: its login, then its channels, each through the connection's rules. */
function serveSshClient(
  client: Connection,
  d: {
    conn: StudentConnection;
    login: GatewayLogin;
    audit?: Logger;
    log?: Logger;
    authTimeoutMs: number;
    releaseCap: () => void;
  },
): void {
  const { conn, login } = d;
  const { connId, source } = conn;
  const authTimer = setTimeout(() => {
    d.audit?.warn(
      { audit: 'ssh.auth.timeout', connId, source, timeoutMs: d.authTimeoutMs },
      'ssh connection closed: not logged in in time',
    );
    client.end();
  }, d.authTimeoutMs);
  authTimer.unref();
  let session: GatewaySession | undefined;
  let lookup: Promise<GatewaySession | undefined> | undefined;
  let refusal: string | undefined;

  client.on('error', (err) =>
    d.log?.debug({ connId, err: err.message }, 'student connection error'),
  );
  client.on('close', () => {
    clearTimeout(authTimer);
    d.releaseCap();
    conn.finish();
  });

  let attempts = 0;
  client.on('authentication', (ctx) => {
    const sessionId = ctx.username;
    // Like sshd's MaxAuthTries: a client cycling through keys or names is cut off.
    if (++attempts > 20) {
      ctx.reject([]);
      client.end();
      return;
    }
    if (ctx.method === 'keyboard-interactive') {
      // Only used to show why we refused: OpenSSH prints the instructions.
      const message =
        refusal ??
        `log in with the key labvirt gave you for this session: ssh -i <key file> ${SESSION_NAME.test(sessionId) ? sessionId : '<session>'}@<gateway>`;
      // One prompt, because some clients answer an empty prompt list without showing anything.
      ctx.prompt(
        [{ prompt: '(press Enter) ', echo: false }],
        'labvirt',
        `labvirt: ${message}`,
        () => ctx.reject(['publickey']),
      );
      return;
    }
    if (ctx.method !== 'publickey') return ctx.reject(['publickey', 'keyboard-interactive']);
    if (!SESSION_NAME.test(sessionId)) {
      refusal = 'log in as your session id, e.g. ssh s-abc1234567@<gateway>';
      return ctx.reject(['publickey', 'keyboard-interactive']);
    }
    lookup ??= login.lookup(connId, sessionId);
    lookup.then(
      (s) => {
        const why = login.refusal(sessionId, s, (keys) => matchKey(keys, ctx) !== undefined);
        if (why === undefined) {
          if (ctx.signature) session = s;
          return ctx.accept();
        }
        refusal = why;
        // Every refused key is audited, offered or signed: OpenSSH never signs
        // with a key the server turned down, so a wrong key is only ever offered.
        login.auditRefused({
          connId,
          sessionId,
          student: s?.student,
          source,
          key: fingerprint(ctx.key.data),
          reason: why,
        });
        ctx.reject(['publickey', 'keyboard-interactive']);
      },
      (err: unknown) => {
        // Asked again at the client's next attempt, not cached as a refusal.
        lookup = undefined;
        refusal = login.unavailable(err, { connId, sessionId, source });
        ctx.reject(['publickey', 'keyboard-interactive']);
      },
    );
  });

  client.on('ready', () => {
    clearTimeout(authTimer);
    d.releaseCap();
    conn.begin(session as GatewaySession);
    serveChannels(client, conn);
  });
}

/** A logged-in SSH client's channels: shells, commands, sftp, notices and jumps. */
function serveChannels(client: Connection, conn: StudentConnection): void {
  const bridge = (down: ServerChannel, up: ClientChannel, interactive: boolean) => {
    const stopNotices = interactive
      ? conn.addNoticeSink((text) => down.stderr.write(note(text)))
      : undefined;
    down.on('data', (d: Buffer) => conn.input(d.length));
    up.on('data', (d: Buffer) => conn.output(d.length));
    up.stderr.on('data', (d: Buffer) => conn.output(d.length));
    down.pipe(up);
    up.pipe(down, { end: false });
    up.stderr.pipe(down.stderr, { end: false });
    up.on('exit', (code: number | null, signal?: string, dump?: boolean, desc?: string) => {
      try {
        if (typeof code === 'number') down.exit(code);
        else if (signal) down.exit(signal, dump ?? false, desc ?? '');
      } catch {
        /* a signal name ssh2 does not know: the channel just closes */
      }
    });
    up.on('close', () => {
      stopNotices?.();
      down.end();
    });
    down.on('close', () => {
      stopNotices?.();
      up.close();
    });
  };
  const failChannel = (down: ServerChannel, err: unknown) => {
    down.stderr.write(note(`could not reach your environment: ${(err as Error).message}`));
    down.exit(255);
    down.end();
  };

  client.on('session', (acceptSession) => {
    const sess = acceptSession();
    conn.countChannel('session');
    const env: Record<string, string> = {};
    let pty: PseudoTtyInfo | undefined;
    let up: ClientChannel | undefined;
    sess.on('env', (accept, reject, e) => {
      if (/^(LANG|LC_[A-Z_]+)$/.test(e.key)) {
        env[e.key] = e.val;
        accept?.();
      } else reject?.();
    });
    sess.on('pty', (accept, _reject, p) => {
      pty = p;
      accept?.();
    });
    sess.on('window-change', (accept, _reject, w) => {
      accept?.();
      up?.setWindow(w.rows, w.cols, w.height, w.width);
    });
    sess.on('signal', (accept, _reject, sig) => {
      accept?.();
      up?.signal(sig.name);
    });
    const ptyOpts = () =>
      pty
        ? {
            rows: pty.rows,
            cols: pty.cols,
            height: pty.height,
            width: pty.width,
            term: pty.term,
            modes: pty.modes as never,
          }
        : undefined;
    sess.on('shell', (accept) => {
      const down = accept();
      conn.countChannel('shell');
      conn.controlPlane().then(
        (c) =>
          c.shell(ptyOpts() ?? false, { env }, (err, stream) => {
            if (err) return failChannel(down, err);
            up = stream;
            bridge(down, stream, pty !== undefined);
          }),
        (err) => failChannel(down, err),
      );
    });
    sess.on('exec', (accept, _reject, e) => {
      const down = accept();
      conn.countChannel(/^scp( |$)/.test(e.command) ? 'scp' : 'exec');
      conn.controlPlane().then(
        (c) =>
          // The student's command goes to the guest verbatim, as any SSH hop would pass it.
          c.exec(e.command, { env, ...(pty ? { pty: ptyOpts() } : {}) }, (err, stream) => {
            if (err) return failChannel(down, err);
            up = stream;
            bridge(down, stream, pty !== undefined);
          }),
        (err) => failChannel(down, err),
      );
    });
    sess.on('subsystem', (accept, reject, sub) => {
      if (sub.name === NOTICES_SUBSYSTEM) {
        const down = accept();
        conn.countChannel('notices');
        const stop = conn.addNoticeSink((text) => down.stderr.write(note(text)));
        down.on('close', stop);
        // Nothing is read from it: what a client sends is dropped.
        down.resume();
        return;
      }
      if (sub.name !== 'sftp') return reject?.();
      const down = accept();
      conn.countChannel('sftp');
      conn.controlPlane().then(
        (c) =>
          c.subsys('sftp', (err, stream) => {
            if (err) return failChannel(down, err);
            up = stream;
            bridge(down, stream, false);
          }),
        (err) => failChannel(down, err),
      );
    });
  });

  client.on('tcpip', (accept, reject, t) => {
    conn.jump(t.destIP, t.destPort).then(
      (sock) => {
        const ch = accept();
        ch.on('data', (d: Buffer) => conn.input(d.length));
        ch.pipe(sock).pipe(ch);
        ch.on('close', () => sock.destroy());
        sock.on('close', () => ch.close());
        sock.on('error', () => ch.close());
      },
      () => reject(),
    );
  });
}
