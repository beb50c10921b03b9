import { randomBytes } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { connect as tcpConnect, type Socket } from 'node:net';
import ssh2, { type Client, type ParsedKey, type PublicKeyAuthMethod } from 'ssh2';
import type { Logger } from '../log/index.js';
import type { GatewaySession, SessionDirectory } from './gateway-api.js';
import type { EnvIdentitySource, HostKeyMismatchError, HostKeyPins } from './hostkeys.js';
import type { GuestResolver } from './resolver.js';
import { guestAlgorithms } from './algorithms.js';
import { preparedSigningKey } from './key-objects.js';

/**
 * A diagnostics channel with every byte count the gateway hands on, as
 * {@link TerminalBytes}: a bench subscribes to split a keystroke's echo into
 * its legs (to the gateway, gateway → guest → gateway, back to the client).
 * Without a subscriber nothing is published.
 */
export const TERMINAL_BYTES_CHANNEL = 'labvirt:gateway:bytes';
export interface TerminalBytes {
  sessionId: string;
  /** `in`: the student's bytes reached the gateway; `out`: the guest's bytes reached it. */
  direction: 'in' | 'out';
  bytes: number;
}
const terminalBytes = channel(TERMINAL_BYTES_CHANNEL);

/** What every student connection of one gateway shares. */
export interface ConnectionRules {
  directory: SessionDirectory;
  log?: Logger;
  audit?: Logger;
  now: () => number;
  idleMs: number;
  warnMs: number;
  recheckMs: number;
  guestUser: string;
  /** The gateway's own key for its hop, parsed and prepared once (key-objects.ts). */
  clientKey: ParsedKey;
  identity?: EnvIdentitySource;
  resolve: GuestResolver;
  pins: HostKeyPins;
  onHostKeyMismatch?: (envId: string, error: HostKeyMismatchError) => void;
  /** Per session, how to make each of its open connections re-read it now. */
  rechecks: Map<string, Set<() => void>>;
  /** Every open connection (for the count and for close). */
  open: Set<StudentConnection>;
}

/**
 * One student's connection to the gateway, whatever carries it (an SSH
 * client, or the web terminal bridge in the gateway's own process): its
 * audit lines, the idle and session-end warnings and cuts, the re-reading
 * of its session, the hop to the control plane and the jumps it may make.
 * The carriers only translate their own protocol into these calls, so the
 * rules exist once.
 */
export class StudentConnection {
  readonly connId = randomBytes(6).toString('hex');
  private session: GatewaySession | undefined;
  private readonly started: number;
  private bytesIn = 0;
  private bytesOut = 0;
  private readonly channels: Record<string, number> = {};
  /** Where the gateway's notices go: each interactive channel's stderr, or an in-process listener. */
  private readonly noticeSinks = new Set<(text: string) => void>();
  private lastActivity: number;
  private warnedIdle = false;
  private warnedEnd = false;
  private endReason = 'client closed';
  private endMessage = 'the connection to your environment was closed';
  private ticker: NodeJS.Timeout | undefined;
  private lastRecheck = 0;
  private recheckNow: (() => void) | undefined;
  private closing = false;
  private finished = false;
  private upstream: Promise<Client> | undefined;
  private upstreamClient: Client | undefined;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly rules: ConnectionRules,
    readonly source: string,
    /** Ends what carries the connection; its end must come back as {@link finish}. */
    private readonly endCarrier: () => void,
  ) {
    this.started = rules.now();
    this.lastActivity = this.started;
    rules.open.add(this);
  }

  /** Logged in to `s`: audited, and from now on watched for idleness and the session's end. */
  begin(s: GatewaySession): void {
    const { rules } = this;
    this.session = s;
    rules.audit?.info(
      {
        audit: 'ssh.connection.open',
        ...this.auditIdentity(s),
      },
      'ssh connection opened',
    );
    this.lastRecheck = rules.now();
    this.ticker = setInterval(
      () => void this.tick(),
      Math.max(50, Math.min(5000, Math.floor(rules.warnMs / 4) || 50)),
    );
    this.ticker.unref();
    const recheckNow = () => {
      this.lastRecheck = -Infinity;
      void this.tick();
    };
    this.recheckNow = recheckNow;
    if (!rules.rechecks.has(s.sessionId)) rules.rechecks.set(s.sessionId, new Set());
    rules.rechecks.get(s.sessionId)!.add(recheckNow);
  }

  /** Who and what a connection's open and close audit lines both name. */
  private auditIdentity(s: GatewaySession) {
    return {
      connId: this.connId,
      student: s.student,
      sessionId: s.sessionId,
      envId: s.envId,
      source: this.source,
      startedAt: new Date(this.started).toISOString(),
    };
  }

  /** Why the connection ended, in words for the student. */
  get closeMessage(): string {
    return this.endMessage;
  }

  /** The carrier is gone: the audit line, and nothing of the connection left running. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const { rules } = this;
    rules.open.delete(this);
    if (this.ticker) clearInterval(this.ticker);
    const s = this.session;
    if (s && this.recheckNow) {
      const mine = rules.rechecks.get(s.sessionId);
      mine?.delete(this.recheckNow);
      if (mine?.size === 0) rules.rechecks.delete(s.sessionId);
    }
    this.upstreamClient?.end();
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    this.noticeSinks.clear();
    if (!s) return;
    rules.audit?.info(
      {
        audit: 'ssh.connection.close',
        ...this.auditIdentity(s),
        endedAt: new Date(rules.now()).toISOString(),
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        channels: this.channels,
        reason: this.endReason,
      },
      'ssh connection closed',
    );
  }

  /** Run when the connection finishes (a jump's socket, say). */
  onFinish(cleanup: () => void): void {
    if (this.finished) cleanup();
    else this.cleanups.push(cleanup);
  }

  /** Ends the connection from the gateway's side. */
  end(): void {
    this.endCarrier();
  }

  countChannel(type: string): void {
    this.channels[type] = (this.channels[type] ?? 0) + 1;
  }

  /** The student sent `n` bytes: counted, and the idle timer starts over. */
  input(n: number): void {
    this.bytesIn += n;
    this.lastActivity = this.rules.now();
    this.warnedIdle = false;
    if (terminalBytes.hasSubscribers) this.trace('in', n);
  }

  /** The guest sent `n` bytes to the student. */
  output(n: number): void {
    this.bytesOut += n;
    if (terminalBytes.hasSubscribers) this.trace('out', n);
  }

  private trace(direction: TerminalBytes['direction'], bytes: number): void {
    if (!this.session) return;
    terminalBytes.publish({
      sessionId: this.session.sessionId,
      direction,
      bytes,
    } satisfies TerminalBytes);
  }

  /** Adds a place the gateway's notices go; returns how to take it away. */
  addNoticeSink(sink: (text: string) => void): () => void {
    this.noticeSinks.add(sink);
    // A warning that fell due while nobody could hear it (a shell's sink
    // comes only once its hop to the guest is up) is told now, not lost.
    if (this.noticeSinks.size === 1 && !this.finished) void this.tick();
    return () => void this.noticeSinks.delete(sink);
  }

  tell(text: string): void {
    for (const sink of this.noticeSinks) sink(text);
  }

  /** Tells the student why, then ends the connection a moment later (so the words arrive). */
  disconnect(reason: string, message: string): void {
    if (this.closing || this.finished) return;
    this.closing = true;
    this.endReason = reason;
    this.endMessage = message;
    this.tell(message);
    setTimeout(() => this.endCarrier(), 200).unref();
  }

  /** The SSH connection to the session's control plane, opened at the first channel that needs it. */
  controlPlane(): Promise<Client> {
    const s = this.session;
    if (!s || this.finished) return Promise.reject(new Error('not connected'));
    return (this.upstream ??= this.hopKey(s).then((key) => this.openUpstream(s, key)));
  }

  /**
   * A TCP connection to a jump's target: only the session env's own nodes
   * (by name or address), only port 22. A refusal is audited and told.
   */
  jump(destIP: string, destPort: number): Promise<Socket> {
    const s = this.session;
    if (!s || this.finished) return Promise.reject(new Error('not connected'));
    const target = s.nodes.find((n) => n.node === destIP || n.ip === destIP);
    if (!target || destPort !== 22) {
      this.rules.audit?.warn(
        {
          audit: 'ssh.jump.refused',
          connId: this.connId,
          sessionId: s.sessionId,
          source: this.source,
          dest: `${destIP}:${destPort}`,
        },
        'jump refused: only the nodes of the session env on port 22',
      );
      this.tell(
        `refused a connection to ${destIP}:${destPort}: only your own nodes (${s.nodes.map((n) => n.node).join(', ')}) on port 22`,
      );
      return Promise.reject(new Error(`jump to ${destIP}:${destPort} refused`));
    }
    let endpoint: { host: string; port: number };
    try {
      endpoint = this.rules.resolve(target.ip, 22);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise((resolve, reject) => {
      const sock = tcpConnect(endpoint.port, endpoint.host);
      sock.setNoDelay(true);
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        this.countChannel('direct-tcpip');
        sock.on('data', (d: Buffer) => this.output(d.length));
        this.onFinish(() => sock.destroy());
        resolve(sock);
      });
    });
  }

  private async tick(): Promise<void> {
    const { rules } = this;
    const s = this.session;
    if (this.closing || !s) return;
    const t = rules.now();
    if (t - this.lastRecheck >= rules.recheckMs) {
      this.lastRecheck = t;
      const fresh = await rules.directory.lookup(s.sessionId).catch(() => s);
      if (!fresh)
        return this.disconnect('session ended', 'your lab session has ended; disconnecting.');
      if (fresh.expiresAt.getTime() !== s.expiresAt.getTime()) {
        s.expiresAt = fresh.expiresAt;
        this.warnedEnd = false;
      }
    }
    const left = s.expiresAt.getTime() - t;
    if (left <= 0)
      return this.disconnect('session expired', 'your lab session has ended; disconnecting.');
    // A warning is given once someone can hear it (addNoticeSink).
    const heard = this.noticeSinks.size > 0;
    if (left <= rules.warnMs && !this.warnedEnd && heard) {
      this.warnedEnd = true;
      this.tell(
        `your lab session ends in ${Math.ceil(left / 1000)} s (at ${s.expiresAt.toISOString()}). Save your work.`,
      );
    }
    const idle = t - this.lastActivity;
    if (idle >= rules.idleMs)
      return this.disconnect(
        'idle',
        `disconnecting after ${Math.round(rules.idleMs / 1000)} s without input.`,
      );
    if (idle >= rules.idleMs - rules.warnMs && !this.warnedIdle && heard) {
      this.warnedIdle = true;
      this.tell(
        `no input for a while: you will be disconnected in ${Math.ceil((rules.idleMs - idle) / 1000)} s unless you type something.`,
      );
    }
  }

  /** The gateway's own key, never an env's, unless the session's nodes trust only their env's key (and this process can read it). */
  private async hopKey(s: GatewaySession): Promise<ParsedKey> {
    if (s.hopKey !== 'env') return this.rules.clientKey;
    if (!this.rules.identity) throw new Error('this gateway cannot reach your environment');
    const { privateKey } = await this.rules.identity(s.envId);
    return preparedSigningKey(privateKey, `the key of env ${s.envId}`);
  }

  private openUpstream(s: GatewaySession, privateKey: ParsedKey): Promise<Client> {
    const { rules } = this;
    const controlPlane = s.nodes.find((n) => n.node === 'control-plane');
    const expectedHostKey = controlPlane?.hostKey;
    return new Promise<Client>((resolve, reject) => {
      if (!controlPlane)
        return reject(new Error('your environment has no control plane address yet'));
      let endpoint: { host: string; port: number };
      try {
        endpoint = rules.resolve(controlPlane.ip, 22);
      } catch (err) {
        return reject(err as Error);
      }
      const auth: PublicKeyAuthMethod = {
        type: 'publickey',
        username: rules.guestUser,
        key: privateKey,
      };
      const up = new ssh2.Client();
      this.upstreamClient = up;
      let mismatch: HostKeyMismatchError | undefined;
      up.once('ready', () => resolve(up));
      up.on('error', (err) => reject(mismatch ?? err));
      up.on('close', () =>
        this.disconnect('guest closed', 'the connection to your environment was closed'),
      );
      up.connect({
        host: endpoint.host,
        port: endpoint.port,
        username: rules.guestUser,
        // A parsed key goes through an auth list (`privateKey` takes only text).
        authHandler: [auth],
        readyTimeout: 15_000,
        keepaliveInterval: 15_000,
        algorithms: guestAlgorithms(expectedHostKey),
        hostVerifier: (key: Buffer) => {
          mismatch = rules.pins.check(
            s.envId,
            'control-plane',
            key,
            expectedHostKey,
            controlPlane.ip,
          );
          if (mismatch) {
            rules.audit?.error(
              {
                audit: 'ssh.hostkey.mismatch',
                connId: this.connId,
                sessionId: s.sessionId,
                envId: s.envId,
                node: 'control-plane',
                ip: controlPlane.ip,
                expected: mismatch.pinned,
                offered: mismatch.offered,
              },
              'guest host key mismatch: refused to connect the student',
            );
            rules.onHostKeyMismatch?.(s.envId, mismatch);
          }
          return mismatch === undefined;
        },
      });
      // From the first byte, not only once ready: keystrokes are tiny packets,
      // and so are the handshake's messages, which ssh2 writes one by one
      // (docs/ssh.md "Nagle's algorithm").
      up.setNoDelay(true);
    });
  }
}
