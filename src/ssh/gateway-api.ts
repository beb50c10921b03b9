import type { Duplex } from 'node:stream';
import type { Logger } from '../log/index.js';
import type { EnvIdentitySource, HostKeyMismatchError, NodeName } from './hostkeys.js';
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
  /** Open student connections (SSH and in-process alike). */
  readonly connections: number;
  /**
   * A session opened from this process (the web terminal bridge, after it
   * checked the student's cookie): no SSH between caller and gateway, the
   * same login check (the session must exist, be active and let its key
   * holder in), audit lines, idle timeout, warnings and session-end cut-off
   * as an SSH login. Its audit source is `in-process:0`. Rejects with
   * {@link GatewayRefusal} when the login is refused.
   */
  openSession(sessionId: string): Promise<LocalSession>;
  close(): Promise<void>;
}

/** A login the gateway refused, with what to tell the student. */
export class GatewayRefusal extends Error {
  constructor(
    message: string,
    /** The session could not be looked up just now (try again), rather than refused. */
    readonly unavailable = false,
  ) {
    super(message);
    this.name = 'GatewayRefusal';
  }
}

export interface LocalPty {
  term: string;
  cols: number;
  rows: number;
}

/** One logged-in session of the gateway's own process (see {@link Gateway.openSession}). */
export interface LocalSession {
  readonly sessionId: string;
  /** A shell on the session's control plane (a pty when `pty` is given). */
  shell(pty: LocalPty | undefined): Promise<LocalChannel>;
  /** A command on the control plane, passed verbatim, as an SSH exec. */
  exec(command: string, pty?: LocalPty): Promise<LocalChannel>;
  /**
   * A jump (`direct-tcpip`) to one of the session env's own nodes (by name
   * or address), port 22 only: a stream to its SSH server. Anything else is
   * refused and audited, as for an SSH client.
   */
  jump(node: string, port: number): Promise<Duplex>;
  /** The gateway's notices (warnings before the end or an idle cut, why it disconnects). */
  onNotice(listener: (text: string) => void): () => void;
  /** Called once when the session's connection is gone, with the gateway's reason. */
  onClose(listener: (reason: string) => void): void;
  /** Ends the connection (and every channel and jump of it). */
  end(): void;
}

/** A channel of a {@link LocalSession}: what the caller writes is the student's input. */
export interface LocalChannel {
  write(data: Buffer | string): void;
  /** The guest's output (stdout and stderr as they come). */
  onOutput(listener: (chunk: Buffer) => void): void;
  /** Called once when the channel is closed, with the command's exit code (null: none, or a signal). */
  onClose(listener: (exitCode: number | null) => void): void;
  /** Stops reading the guest's output until `resume` (the caller's buffer is full). */
  pause(): void;
  resume(): void;
  resize(cols: number, rows: number): void;
  close(): void;
}
