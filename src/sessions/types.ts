import type { EnvState, SessionEndReason } from '../events/index.js';

export type SessionState = 'waiting' | 'claimed' | 'preparing' | 'active' | 'ended';

/** How the student reaches their env. */
export interface ConnectionDetails {
  mode: 'gateway' | 'nodeport';
  host: string;
  port: number;
  user: string;
  /** A ready-to-paste command, e.g. `ssh -i lab.key -p 2222 s-abc123@lab.example.org`. */
  command: string;
  /** Nodes the student can jump to from the control plane. */
  nodes: string[];
}

export interface SessionView {
  id: string;
  student: string;
  labId: string;
  labTitle: string;
  /** The lab's description (Markdown), what the student is asked to fix. */
  labDescription?: string;
  flavor: string;
  state: SessionState;
  envId?: string;
  createdAt: string;
  /** When the student was let in. */
  readyAt?: string;
  expiresAt?: string;
  /** Latest expiry extensions may reach. */
  maxExpiresAt?: string;
  hintsUsed: number;
  hintsTotal: number;
  endedReason?: SessionEndReason;
  /** When it ended, and (for a failed session) why, in words a student can read. */
  endedAt?: string;
  endedDetail?: string;
  /** Set by the first check that passes: when, and the points it scored. */
  solvedAt?: string;
  score?: number;
  maxScore?: number;
  connection?: ConnectionDetails;
  /**
   * Nodes whose VM was replaced while the session was active (a drain, a
   * crash, a restart), oldest first: each came back from its image, so what
   * the student did on it is gone. The session goes on.
   */
  nodeRestarts?: { node: string; at: string }[];
  /** Only while waiting for an env. */
  queue?: { position: number; estimateSeconds: number };
  /**
   * Only while the env is being prepared, once the machines proved busy: a
   * step of the lab's setup (or labvirt's tool inventory) ran out of its
   * time and runs again with `retrySeconds` (event `session.setup-slow`).
   * `message` is what to tell the student.
   */
  slow?: { message: string; since: string; step: string; node: string; retrySeconds: number };
  /**
   * Active sessions, in the single-session view (status): the NodePort and
   * LoadBalancer ports of the student's cluster published on the host
   * (`namespace/service:port → address`) and those refused, with why.
   */
  ports?: {
    published: {
      service: string;
      port: number;
      protocol: string;
      studentNodePort: number;
      hostNodePort: number;
      address: string;
    }[];
    refused: { service: string; port: number; protocol: string; reason: string; message: string }[];
  };
  /**
   * The session's private key (OpenSSH format). Present only in the response
   * that created the session and only when the student registered no key of
   * their own; never stored in logs, never shown again.
   */
  privateKey?: string;
}

export interface StartRequest {
  student: string;
  labId: string;
  /** The student's own public key (OpenSSH format); a fresh ed25519 pair is made when absent. */
  publicKey?: string;
  /** Idempotency key (e.g. Slack's trigger id): a repeated request returns the same session. */
  requestId?: string;
}

export interface CheckOutcome {
  name: string;
  description: string;
  passed: boolean;
  points: number;
  /** The `FAIL:` lines the check printed, or a plain explanation when it could not run. */
  messages: string[];
}

export interface CheckResult {
  sessionId: string;
  passed: boolean;
  score: number;
  maxScore: number;
  checks: CheckOutcome[];
}

export interface HintResult {
  sessionId: string;
  /** 1-based index of the hint just revealed. */
  index: number;
  total: number;
  text: string;
}

export interface FlavorPoolStatus {
  flavor: string;
  /** Envs per state. */
  counts: Record<EnvState, number>;
  minWarm: number;
  /** Effective target, including scheduled class targets currently in force. */
  targetWarm: number;
  maxTotal: number;
  waiting: number;
  /** True when the host cluster cannot fit more VMs (VMIs stuck Unschedulable). */
  capacityBlocked: boolean;
  capacityReason?: string;
  scheduledTargets: { name: string; minWarm: number; from: string; until: string }[];
  /** The runtime target an operator set; it wins over minWarm and schedules until cleared. */
  targetOverride?: number;
}

export interface PoolStatus {
  flavors: FlavorPoolStatus[];
}

export interface EnvView {
  id: string;
  namespace: string;
  flavor: string;
  state: EnvState;
  createdAt: string;
  sessionId?: string;
  student?: string;
  labId?: string;
  expiresAt?: string;
}

/** Stable error codes of the service; front ends map them to HTTP statuses and messages. */
export type LabvirtErrorCode =
  | 'INVALID_REQUEST'
  | 'UNKNOWN_LAB'
  | 'UNKNOWN_FLAVOR'
  | 'SESSION_NOT_FOUND'
  | 'NOT_YOUR_SESSION'
  | 'SESSION_NOT_ACTIVE'
  | 'LIMIT_REACHED'
  | 'REQUEST_ID_IN_USE'
  | 'CHECK_RUNNING'
  | 'RATE_LIMITED'
  | 'MAX_EXTENSION'
  | 'NO_MORE_HINTS'
  | 'INVALID_PUBLIC_KEY'
  | 'ENV_NOT_FOUND'
  | 'ENV_NOT_FAILED'
  | 'UNAVAILABLE';

export class LabvirtError extends Error {
  constructor(
    readonly code: LabvirtErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'LabvirtError';
  }
}

/**
 * What front ends (HTTP API, Slack, CLI through the API) can ask of labvirt.
 * `actor` is the student on whose behalf a call is made; operators pass
 * `undefined` to act on any session.
 */
export interface LabvirtService {
  start(request: StartRequest): Promise<SessionView>;
  stop(sessionId: string, actor?: string): Promise<SessionView>;
  extend(sessionId: string, actor?: string): Promise<SessionView>;
  status(sessionId: string, actor?: string): Promise<SessionView>;
  list(filter?: { student?: string; includeEnded?: boolean }): Promise<SessionView[]>;
  check(sessionId: string, actor?: string): Promise<CheckResult>;
  hint(sessionId: string, actor?: string): Promise<HintResult>;
  poolStatus(): Promise<PoolStatus>;
  listEnvs(filter?: { flavor?: string; state?: EnvState }): Promise<EnvView[]>;
  /** Labs students can start. */
  listLabs(): Promise<LabSummary[]>;
  /** Readiness of the dependencies (Redis, host cluster). */
  health(): Promise<{ ok: boolean; checks: Record<string, { ok: boolean; detail?: string }> }>;
}

/** A lab in the catalogue students start from. */
export interface LabSummary {
  id: string;
  title: string;
  flavor: string;
  difficulty: string;
  timeLimitMinutes: number;
}

/** What a drain did: warm envs going away now, and the envs it leaves alone. */
export interface DrainResult {
  flavor: string;
  /** Warm envs taken out of the pool and being torn down. */
  tearingDown: string[];
  /** Envs serving sessions (claimed, preparing, active): they finish normally. */
  inUse: number;
  /** Envs still provisioning or booting: they become warm; drain again to remove them. */
  inFlight: number;
}

/**
 * Operators' actions on the pool (the dashboard, `/v1/pool/...`). Every
 * replica's replenish reads the runtime target from Redis.
 */
export interface PoolAdmin {
  /** Sets a flavor's warm target at runtime (0 … maxTotal) and asks for a replenish. */
  setWarmTarget(flavor: string, target: number): Promise<FlavorPoolStatus>;
  /** Back to the configured target (minWarm and schedules). */
  clearWarmTarget(flavor: string): Promise<FlavorPoolStatus>;
  /** Target 0 and tears down the flavor's warm envs; in-use envs finish normally. */
  drainFlavor(flavor: string): Promise<DrainResult>;
  /** Tears down an env in state `failed`; any other state is refused. */
  deleteFailedEnv(envId: string): Promise<EnvView>;
}

/** A student's registered SSH public key, as shown back to them. */
export interface RegisteredKey {
  publicKey: string;
  /** `SHA256:…`, as `ssh-keygen -lf` prints it. */
  fingerprint: string;
}

/**
 * What front ends that know their students (Slack) need beyond
 * {@link LabvirtService}: registered keys, history and lab details.
 */
export interface StudentService extends LabvirtService {
  /** Validates and stores the student's key; later starts without a key use it. */
  registerKey(student: string, publicKey: string): Promise<RegisteredKey>;
  registeredKey(student: string): Promise<RegisteredKey | undefined>;
  /** The student's latest sessions, live and ended, newest first. */
  recentSessions(student: string, limit?: number): Promise<SessionView[]>;
}
