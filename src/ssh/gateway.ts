import { randomBytes } from 'node:crypto';
import { createServer as createTcpServer, connect as tcpConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2, {
  type Client,
  type ClientChannel,
  type Connection,
  type PseudoTtyInfo,
  type ServerChannel,
} from 'ssh2';
import type { Logger } from '../log/index.js';
import { rejectAfter } from '../deadline/index.js';
import { HostKeyPins, type EnvIdentitySource, type HostKeyMismatchError } from './hostkeys.js';
import { duplexPair } from './in-process.js';
import { fingerprint, matchKey, parseAuthorizedKey } from './keys.js';
import type { NodeName } from './executor.js';
import type { GuestResolver } from './resolver.js';

export interface GatewaySession {
  sessionId: string;
  student: string;
  envId: string;
  expiresAt: Date;
  publicKeys: string[];
  /**
   * Where each node is and the host key it must show, whatever its address
   * (without one, the first key seen is pinned for the env's life).
   */
  nodes: { node: NodeName; ip: string; hostKey?: string }[];
  /**
   * `env`: the session's nodes trust the env's own key for the hop, not the
   * gateway's (activated before the gateway had a key of its own); only a
   * gateway given `identity` can take it there.
   */
  hopKey?: 'gateway' | 'env';
  /**
   * Why the gateway cannot take the student to this session (told to a
   * client holding the session's key instead of letting it in).
   */
  refusal?: string;
}

export interface SessionDirectory {
  lookup(sessionId: string): Promise<GatewaySession | undefined>;
  /**
   * Tells of sessions that changed (ended, expired, extended, moved); the
   * gateway's open connections of such a session re-read it at once instead
   * of at their next periodic recheck. Returns a function that stops telling.
   */
  onChange?(listener: (sessionId: string) => void): () => void;
}

/**
 * A session channel subsystem that carries only the gateway's notices
 * (warnings before the session ends or before an idle cut, the reason for a
 * disconnect) on its stderr: for a client whose shell is on another node
 * through a jump, e.g. the web terminal's worker tabs.
 */
export const NOTICES_SUBSYSTEM = 'labvirt-notices';

export interface GatewayOptions {
  hostKey: string | Buffer;
  port?: number;
  host?: string;
  directory: SessionDirectory;
  /**
   * The gateway's own key (`ssh.gatewayClientKey`): the hop to a session's
   * control plane logs in as the guest user with it (each claim installs its
   * public half there) and requires the host key the session names.
   */
  clientKey: string | Buffer;
  /**
   * Each env's own key (from its PKI Secret), for sessions whose hop needs it
   * (`hopKey: 'env'`); only in a process with cluster access.
   */
  identity?: EnvIdentitySource;
  resolve: GuestResolver;
  idleTimeoutMs?: number;
  /** How long before an idle or session-end disconnect the student is warned (default 60 s, at most half the idle timeout). */
  warnBeforeMs?: number;
  /** How often an open connection re-reads its session (extension, early release); default 30 s. */
  recheckMs?: number;
  /** Guest account students get (default `student`). */
  guestUser?: string;
  logger?: Logger;
  /** Where the per-connection audit lines go (default: the logger). */
  audit?: Logger;
  now?: () => number;
  /** Told when a guest shows a host key other than its own (after the audit line). */
  onHostKeyMismatch?: (envId: string, error: HostKeyMismatchError) => void;
  /** A connection that has not logged in within this time is closed (default 30 s, like sshd's LoginGraceTime). */
  authTimeoutMs?: number;
  /** Connections not yet logged in, from all sources together; more are closed at once (default 512). */
  maxUnauthenticated?: number;
  /** Connections not yet logged in from one source address; more are closed at once (default 64). */
  maxUnauthenticatedPerSource?: number;
  /**
   * How long a login may keep retrying a session lookup that fails (Redis or
   * the cluster slow or unreachable) before the student is told to try again
   * (default 15 s, at most the authentication timeout). Waits between tries
   * start at 250 ms and double up to 2 s.
   */
  lookupRetryBudgetMs?: number;
  /** One session lookup taking longer than this counts as failed (default 5 s). */
  lookupTimeoutMs?: number;
}

export interface Gateway {
  readonly port: number;
  /** Open student connections. */
  readonly connections: number;
  /**
   * A connection from this process (the web terminal bridge): an SSH client
   * given this stream as its socket is served like any other (login, audit,
   * idle and session-end cuts), without a TCP round trip. Its audit source
   * is `in-process`.
   */
  connectInProcess(): Duplex;
  close(): Promise<void>;
}

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { Server } = ssh2;

const SESSION_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A lookup that failed (as opposed to one that found no session). */
class LookupFailed extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

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

function note(text: string): string {
  return `\r\n[labvirt] ${text}\r\n`;
}

/**
 * One SSH entry point for every student: `ssh <session>@gateway` with the
 * session's key lands on the env's control plane as `student`; `-J` jumps
 * reach only the env's own nodes on port 22.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const log = options.logger;
  const audit = options.audit ?? log;
  const now = options.now ?? Date.now;
  const idleMs = options.idleTimeoutMs ?? 30 * 60_000;
  const warnMs = Math.min(options.warnBeforeMs ?? 60_000, Math.floor(idleMs / 2));
  const recheckMs = options.recheckMs ?? 30_000;
  const guestUser = options.guestUser ?? 'student';
  const authTimeoutMs = options.authTimeoutMs ?? 30_000;
  const retryBudgetMs = Math.min(options.lookupRetryBudgetMs ?? 15_000, authTimeoutMs);
  const lookupTimeoutMs = options.lookupTimeoutMs ?? 5000;
  const lookupOnce = (sessionId: string) =>
    rejectAfter(
      options.directory.lookup(sessionId),
      lookupTimeoutMs,
      () => new Error(`no answer within ${lookupTimeoutMs} ms`),
    );
  const pins = new HostKeyPins();
  const open = new Set<Connection>();
  // Per session, how to make each of its open connections re-read it now.
  const rechecks = new Map<string, Set<() => void>>();
  const stopWatching = options.directory.onChange?.((sessionId) => {
    for (const recheck of rechecks.get(sessionId) ?? []) recheck();
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

  /** Asks the directory, again after short waits when it fails; throws LookupFailed when every try failed. */
  const lookupSession = async (connId: string, sessionId: string) => {
    const deadline = now() + retryBudgetMs;
    let wait = 250;
    for (let attempt = 0; ; attempt++, wait = Math.min(wait * 2, 2000)) {
      try {
        return await lookupOnce(sessionId);
      } catch (err) {
        if (now() + wait >= deadline) {
          log?.warn(
            { connId, sessionId, attempts: attempt + 1, err: (err as Error).message },
            'session lookup failed; the student was told to retry',
          );
          throw new LookupFailed((err as Error).message);
        }
        log?.debug(
          { connId, sessionId, attempt: attempt + 1, err: (err as Error).message },
          'session lookup failed; trying again',
        );
        await sleep(wait);
      }
    }
  };

  const server = new Server({ hostKeys: [options.hostKey] }, (client, info) => {
    open.add(client);
    const source = `${info.ip}:${info.port}`;
    const connId = randomBytes(6).toString('hex');
    const handshake = pending.get(source);
    handshake?.seen();
    const releaseCap = handshake?.release ?? (() => undefined);
    const authTimer = setTimeout(() => {
      audit?.warn(
        { audit: 'ssh.auth.timeout', connId, source, timeoutMs: authTimeoutMs },
        'ssh connection closed: not logged in in time',
      );
      client.end();
    }, authTimeoutMs);
    authTimer.unref();
    let session: GatewaySession | undefined;
    let lookup: Promise<GatewaySession | undefined> | undefined;
    let refusal: string | undefined;
    let upstream: Promise<Client> | undefined;
    let upstreamClient: Client | undefined;
    const started = now();
    let bytesIn = 0;
    let bytesOut = 0;
    const channels: Record<string, number> = {};
    const terminals = new Set<ServerChannel>();
    let lastActivity = now();
    let warnedIdle = false;
    let warnedEnd = false;
    let endReason = 'client closed';
    let ticker: NodeJS.Timeout | undefined;
    let closing = false;

    let recheckNow: (() => void) | undefined;
    const forgetRecheck = (sessionId: string) => {
      const mine = rechecks.get(sessionId);
      if (!mine || !recheckNow) return;
      mine.delete(recheckNow);
      if (mine.size === 0) rechecks.delete(sessionId);
    };
    const countChannel = (type: string) => (channels[type] = (channels[type] ?? 0) + 1);
    const tellTerminals = (text: string) => {
      for (const t of terminals) t.stderr.write(note(text));
    };
    const disconnect = (reason: string, message: string) => {
      if (closing) return;
      closing = true;
      endReason = reason;
      tellTerminals(message);
      setTimeout(() => client.end(), 200).unref();
    };

    client.on('error', (err) =>
      log?.debug({ connId, err: err.message }, 'student connection error'),
    );
    client.on('close', () => {
      clearTimeout(authTimer);
      releaseCap();
      open.delete(client);
      if (ticker) clearInterval(ticker);
      if (session) forgetRecheck(session.sessionId);
      upstreamClient?.end();
      if (session) {
        audit?.info(
          {
            audit: 'ssh.connection.close',
            connId,
            student: session.student,
            sessionId: session.sessionId,
            envId: session.envId,
            source,
            startedAt: new Date(started).toISOString(),
            endedAt: new Date(now()).toISOString(),
            bytesIn,
            bytesOut,
            channels,
            reason: endReason,
          },
          'ssh connection closed',
        );
      }
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
      lookup ??= lookupSession(connId, sessionId);
      lookup.then(
        (s) => {
          if (!s) {
            refusal = `there is no active lab session named ${sessionId} (it may have ended or not started yet)`;
          } else if (s.expiresAt.getTime() <= now()) {
            refusal = `session ${sessionId} ended at ${s.expiresAt.toISOString()}`;
          } else {
            const keys = s.publicKeys.map(parseAuthorizedKey).filter((k) => k !== undefined);
            if (!matchKey(keys, ctx)) {
              refusal = `this key is not the one for session ${sessionId}; use the key file labvirt gave you (ssh -i <key file>)`;
            } else if (s.refusal) {
              // Told only to a client holding the session's key.
              refusal = s.refusal;
            } else {
              if (ctx.signature) session = s;
              return ctx.accept();
            }
          }
          // Every refused key is audited, offered or signed: OpenSSH never signs
          // with a key the server turned down, so a wrong key is only ever offered.
          audit?.warn(
            {
              audit: 'ssh.auth.refused',
              connId,
              sessionId,
              student: s?.student,
              source,
              key: ctx.method === 'publickey' ? fingerprint(ctx.key.data) : undefined,
              reason: refusal,
            },
            'ssh login refused',
          );
          ctx.reject(['publickey', 'keyboard-interactive']);
        },
        (err: unknown) => {
          // Asked again at the client's next attempt, not cached as a refusal.
          lookup = undefined;
          refusal =
            err instanceof LookupFailed
              ? `labvirt could not look up session ${sessionId} just now (a temporary problem on our side); please try again in a few seconds`
              : 'labvirt could not check your login just now; please try again in a few seconds';
          audit?.warn(
            {
              audit: 'ssh.auth.unavailable',
              connId,
              sessionId,
              source,
              reason: 'session lookup failed',
            },
            'ssh login not checked: session lookup failed',
          );
          ctx.reject(['publickey', 'keyboard-interactive']);
        },
      );
    });

    client.on('ready', () => {
      clearTimeout(authTimer);
      releaseCap();
      const s = session as GatewaySession;
      audit?.info(
        {
          audit: 'ssh.connection.open',
          connId,
          student: s.student,
          sessionId: s.sessionId,
          envId: s.envId,
          source,
          startedAt: new Date(started).toISOString(),
        },
        'ssh connection opened',
      );
      const controlPlane = s.nodes.find((n) => n.node === 'control-plane');
      // The gateway's own key, never an env's, unless the session's nodes
      // trust only their env's key (and this process can read it).
      const hopKey = async (): Promise<string | Buffer> => {
        if (s.hopKey !== 'env') return options.clientKey;
        if (!options.identity) throw new Error('this gateway cannot reach your environment');
        return (await options.identity(s.envId)).privateKey;
      };
      const connectUpstream = () =>
        (upstream ??= hopKey().then((key) => openUpstream(key, controlPlane?.hostKey)));
      const openUpstream = (privateKey: string | Buffer, expectedHostKey: string | undefined) =>
        new Promise<Client>((resolve, reject) => {
          if (!controlPlane)
            return reject(new Error('your environment has no control plane address yet'));
          if (!privateKey) return reject(new Error('no key to reach your environment with'));
          let endpoint: { host: string; port: number };
          try {
            endpoint = options.resolve(controlPlane.ip, 22);
          } catch (err) {
            return reject(err);
          }
          const up = new ssh2.Client();
          upstreamClient = up;
          let mismatch: HostKeyMismatchError | undefined;
          up.once('ready', () => resolve(up));
          up.on('error', (err) => reject(mismatch ?? err));
          up.on('close', () =>
            disconnect('guest closed', 'the connection to your environment was closed'),
          );
          up.connect({
            host: endpoint.host,
            port: endpoint.port,
            username: guestUser,
            privateKey,
            readyTimeout: 15_000,
            keepaliveInterval: 15_000,
            ...(expectedHostKey
              ? { algorithms: { serverHostKey: [expectedHostKey.split(' ')[0] as never] } }
              : {}),
            hostVerifier: (key: Buffer) => {
              mismatch = pins.check(
                s.envId,
                'control-plane',
                key,
                expectedHostKey,
                controlPlane.ip,
              );
              if (mismatch) {
                audit?.error(
                  {
                    audit: 'ssh.hostkey.mismatch',
                    connId,
                    sessionId: s.sessionId,
                    envId: s.envId,
                    node: 'control-plane',
                    ip: controlPlane.ip,
                    expected: mismatch.pinned,
                    offered: mismatch.offered,
                  },
                  'guest host key mismatch: refused to connect the student',
                );
                options.onHostKeyMismatch?.(s.envId, mismatch);
              }
              return mismatch === undefined;
            },
          });
        });

      ticker = setInterval(
        () => void tick(),
        Math.max(50, Math.min(5000, Math.floor(warnMs / 4) || 50)),
      );
      ticker.unref();
      let lastRecheck = now();
      const tick = async () => {
        if (closing) return;
        const t = now();
        if (t - lastRecheck >= recheckMs) {
          lastRecheck = t;
          const fresh = await options.directory.lookup(s.sessionId).catch(() => s);
          if (!fresh)
            return disconnect('session ended', 'your lab session has ended; disconnecting.');
          if (fresh.expiresAt.getTime() !== s.expiresAt.getTime()) {
            s.expiresAt = fresh.expiresAt;
            warnedEnd = false;
          }
        }
        const left = s.expiresAt.getTime() - t;
        if (left <= 0)
          return disconnect('session expired', 'your lab session has ended; disconnecting.');
        if (left <= warnMs && !warnedEnd) {
          warnedEnd = true;
          tellTerminals(
            `your lab session ends in ${Math.ceil(left / 1000)} s (at ${s.expiresAt.toISOString()}). Save your work.`,
          );
        }
        const idle = t - lastActivity;
        if (idle >= idleMs)
          return disconnect(
            'idle',
            `disconnecting after ${Math.round(idleMs / 1000)} s without input.`,
          );
        if (idle >= idleMs - warnMs && !warnedIdle) {
          warnedIdle = true;
          tellTerminals(
            `no input for a while: you will be disconnected in ${Math.ceil((idleMs - idle) / 1000)} s unless you type something.`,
          );
        }
      };
      recheckNow = () => {
        lastRecheck = -Infinity;
        void tick();
      };
      if (!rechecks.has(s.sessionId)) rechecks.set(s.sessionId, new Set());
      rechecks.get(s.sessionId)!.add(recheckNow);
      const activity = (n: number) => {
        bytesIn += n;
        lastActivity = now();
        warnedIdle = false;
      };

      const bridge = (down: ServerChannel, up: ClientChannel, interactive: boolean) => {
        if (interactive) terminals.add(down);
        down.on('data', (d: Buffer) => activity(d.length));
        up.on('data', (d: Buffer) => (bytesOut += d.length));
        up.stderr.on('data', (d: Buffer) => (bytesOut += d.length));
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
          terminals.delete(down);
          down.end();
        });
        down.on('close', () => {
          terminals.delete(down);
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
        countChannel('session');
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
          countChannel('shell');
          connectUpstream().then(
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
          countChannel(/^scp( |$)/.test(e.command) ? 'scp' : 'exec');
          connectUpstream().then(
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
            countChannel('notices');
            terminals.add(down);
            down.on('close', () => terminals.delete(down));
            // Nothing is read from it: what a client sends is dropped.
            down.resume();
            return;
          }
          if (sub.name !== 'sftp') return reject?.();
          const down = accept();
          countChannel('sftp');
          connectUpstream().then(
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
        const target = s.nodes.find((n) => n.node === t.destIP || n.ip === t.destIP);
        if (!target || t.destPort !== 22) {
          audit?.warn(
            {
              audit: 'ssh.jump.refused',
              connId,
              sessionId: s.sessionId,
              source,
              dest: `${t.destIP}:${t.destPort}`,
            },
            'jump refused: only the nodes of the session env on port 22',
          );
          tellTerminals(
            `refused a connection to ${t.destIP}:${t.destPort}: only your own nodes (${s.nodes.map((n) => n.node).join(', ')}) on port 22`,
          );
          return reject();
        }
        let endpoint: { host: string; port: number };
        try {
          endpoint = options.resolve(target.ip, 22);
        } catch {
          return reject();
        }
        const sock = tcpConnect(endpoint.port, endpoint.host);
        sock.once('error', () => reject());
        sock.once('connect', () => {
          const ch = accept();
          countChannel('direct-tcpip');
          ch.on('data', (d: Buffer) => activity(d.length));
          sock.on('data', (d: Buffer) => (bytesOut += d.length));
          ch.pipe(sock).pipe(ch);
          ch.on('close', () => sock.destroy());
          sock.on('close', () => ch.close());
          sock.on('error', () => ch.close());
        });
      });
    });
  });

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
      return open.size;
    },
    connectInProcess() {
      const [ours, theirs] = duplexPair();
      // What ssh2 reads for the connection's source (a Duplex has no address).
      Object.assign(ours, { remoteAddress: 'in-process', remotePort: 0 });
      server.injectSocket(ours as never);
      return theirs;
    },
    async close() {
      stopWatching?.();
      for (const c of open) c.end();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}
