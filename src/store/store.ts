import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { ENV_STATES, type EnvState, type SessionEndReason } from '../events/index.js';
import { storeKeys, type StoreKeys } from './keys.js';

export type StoredSessionState = 'waiting' | 'claimed' | 'preparing' | 'active' | 'ended';

export interface EnvRecord {
  envId: string;
  flavor: string;
  state: EnvState;
  createdAt: number;
  updatedAt: number;
  sessionId?: string;
}

export interface SessionRecord {
  id: string;
  student: string;
  labId: string;
  flavor: string;
  state: StoredSessionState;
  requestId: string;
  publicKey: string;
  createdAt: number;
  envId?: string;
  claimedAt?: number;
  readyAt?: number;
  expiresAt?: number;
  warnedAt?: number;
  hintsUsed: number;
  moves: number;
  endedReason?: SessionEndReason;
  endedAt?: number;
  /** JSON of the connection details, set when the session turns active. */
  connection?: string;
  /** Why a failed session failed, in words a student can read. */
  endedDetail?: string;
  /** The first passing check: when, and its score. */
  solvedAt?: number;
  score?: number;
  maxScore?: number;
  /**
   * The VMI uids each node has run while the session was active, first the
   * one it turned active on (a restart is a uid not in the list).
   */
  nodeVmis?: Record<string, string[]>;
  /** Nodes whose VMI was replaced while the session was active, oldest first (`at` in ms). */
  nodeRestarts?: { node: string; at: number }[];
  /** JSON of the lab tools recorded at prepare time (src/sessions/integrity.ts). */
  tools?: string;
  /**
   * Where the SSH gateway finds each node of an active session (set at
   * activation, updated when a restarted node has a new address): all it
   * needs besides Redis, so it needs no cluster access. Public data.
   */
  guests?: Partial<Record<string, GuestAddress>>;
  /**
   * JSON of the latest `session.setup-slow` of the current prepare (step,
   * node, timeoutSeconds, retrySeconds, at): the machines are busy and setup
   * runs again with more time. Cleared when the session moves to another env.
   */
  setupSlow?: string;
}

/** A node's address and the SSH host key it must show (`ssh-ed25519 AAAA…`). */
export interface GuestAddress {
  ip: string;
  /** Absent for guests labvirt did not render (their key is pinned on first use). */
  hostKey?: string;
}

/** Session hash fields `guest:<node>` hold one node's {@link GuestAddress} as JSON. */
const GUEST_FIELD = 'guest:';

export type EnvSnapshot = Pick<EnvRecord, 'envId' | 'flavor' | 'state' | 'createdAt'> & {
  sessionId?: string;
};

export type SessionSnapshot = Omit<SessionRecord, 'requestId' | 'moves' | 'state'> & {
  state: 'claimed' | 'preparing' | 'active';
  requestId?: string;
};

export type RequestOutcome =
  | { outcome: 'existing'; session: SessionRecord }
  /** The request id is another student's: never hand out their session. */
  | { outcome: 'taken' }
  | { outcome: 'limit'; sessions: SessionRecord[] }
  | { outcome: 'claimed'; session: SessionRecord }
  | { outcome: 'waiting'; session: SessionRecord; position: number };

export interface RequestSessionInput {
  sessionId: string;
  student: string;
  labId: string;
  flavor: string;
  requestId: string;
  publicKey: string;
  maxPerStudent: number;
  now: number;
}

// The Lua sources live beside this file in src/. `npm run build` copies them
// to dist/store/scripts (tsc copies no other files), which is where the
// container image, with no src/, finds them. A checkout's compiled copy reads
// the sources, so an edited script never runs stale.
const HERE = dirname(fileURLToPath(import.meta.url));
const SCRIPT_DIRS = [join(HERE, '..', '..', 'src', 'store', 'scripts'), join(HERE, 'scripts')];

/** The directory of the Lua scripts, or an error that says where they were looked for. */
function scriptDir(): string {
  const dir = SCRIPT_DIRS.find((d) => existsSync(d));
  if (dir) return dir;
  throw new Error(
    `labvirt's Redis scripts are missing: neither ${SCRIPT_DIRS.join(' nor ')} exists ` +
      '(`npm run build` copies them into dist/store/scripts)',
  );
}
const SCRIPTS = [
  'requestSession',
  'markEnvWarm',
  'setEnvState',
  'endSession',
  'reassignSession',
  'activateSession',
  'setSessionFields',
  'recordNodeVmis',
  'takeHint',
  'takeKeyLink',
  'releaseSlackLock',
  'releaseCheckLock',
  'extendSlackLock',
  'recordSlackMessage',
  'markSlackDelivered',
  'bumpSlackVersion',
  'startSlackStatusRun',
  'beginSlackPost',
  'clearSlackPost',
  'admitSignedRequest',
] as const;
type ScriptName = (typeof SCRIPTS)[number];

/** Slack delivery state outlives an ended session's record (7 days) by a day. */
const SLACK_MESSAGE_TTL_SECONDS = 8 * 86400;

/** A session's Slack DM status message and what has been delivered to the student. */
export interface SlackMessageState {
  /** The DM channel (`D…`) and `ts` of the status message, once posted. */
  channel?: string;
  ts?: string;
  /** Changes counted so far, and the latest one the message shows. */
  version: number;
  rendered: number;
  /** Digest of what the message shows now (an identical render is not sent again). */
  digest?: string;
  /** The expiry time (ms) the last warning was sent for. */
  warnedFor?: number;
  endedSent: boolean;
  /**
   * The Slack user (`U…`) the session's DMs go to, recorded by the Slack
   * front end that created the session; absent: nothing goes to Slack.
   */
  target?: string;
  /**
   * When a post of the status message began (Redis time, ms) that is not
   * settled yet: set only between {@link Store.beginSlackPost} and the `ts`
   * being recorded (or Slack refusing the post). Left set after its hold,
   * Slack may hold a message whose answer never came back.
   */
  postingSince?: number;
  /** The session state the message shows, and when a run last called Slack to show it (ms). */
  renderedState?: string;
  editedAt?: number;
}

/**
 * What a change to a session's status message is about: its `state` (goes
 * out at once) or only its place in the line (at most once per interval).
 */
export type SlackStatusChange = 'state' | 'position';

/** What {@link Store.beginSlackPost} found: whether, and how, to post the status message. */
export type SlackPostClaim =
  /** A status message is recorded (another run posted it): edit that one. */
  | { kind: 'posted'; channel: string; ts: string }
  /** Another run's post may still be answered until `untilMs` (Redis time): wait for it. */
  | { kind: 'in-flight'; untilMs: number }
  /**
   * Post. `lostSince`: an earlier post began then and its answer never came
   * back, so Slack may already hold the message (look for it first).
   */
  | { kind: 'begin'; lostSince?: number };

/** Moving average weight of the newest provision duration. */
const EWMA_WEIGHT = 0.3;
/** Estimate used before any env of a flavor was provisioned. */
const DEFAULT_PROVISION_MS = 180_000;

/**
 * labvirt's Redis indexes: warm envs per flavor, sessions per student, the
 * waiting lines. Every change that touches several keys is one Lua script
 * (scripts/), so it is atomic; nothing else composes these keys (keys.ts).
 * The host cluster stays the source of truth: {@link rebuildFromSnapshot}
 * restores all of this from it.
 */
export class Store {
  readonly keys: StoreKeys;
  private readonly sha = new Map<ScriptName, { sha: string; source: string }>();

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = storeKeys(prefix);
    const dir = scriptDir();
    for (const name of SCRIPTS) {
      this.sha.set(name, {
        sha: '',
        source: readFileSync(join(dir, `${name}.lua`), 'utf8'),
      });
    }
  }

  private async run(name: ScriptName, args: (string | number)[]): Promise<unknown> {
    const script = this.sha.get(name)!;
    const argv = [this.keys.base, ...args.map(String)];
    if (script.sha) {
      try {
        return await this.redis.evalsha(script.sha, 0, ...argv);
      } catch (err) {
        if (!String((err as Error).message).includes('NOSCRIPT')) throw err;
      }
    }
    script.sha = (await this.redis.script('LOAD', script.source)) as string;
    return this.redis.evalsha(script.sha, 0, ...argv);
  }

  // ---- envs ---------------------------------------------------------------

  async createEnv(input: { envId: string; flavor: string; createdAt: number }): Promise<void> {
    const k = this.keys;
    await this.redis
      .multi()
      .hset(k.env(input.envId), {
        envId: input.envId,
        flavor: input.flavor,
        state: 'provisioning',
        createdAt: input.createdAt,
        updatedAt: input.createdAt,
      })
      .sadd(k.envs, input.envId)
      .sadd(k.flavors, input.flavor)
      .sadd(k.stateSet(input.flavor, 'provisioning'), input.envId)
      .exec();
  }

  async getEnv(envId: string): Promise<EnvRecord | undefined> {
    return toEnv(await this.redis.hgetall(this.keys.env(envId)));
  }

  async setEnvState(
    envId: string,
    state: EnvState,
    opts: { expected?: EnvState; now?: number } = {},
  ): Promise<boolean> {
    const moved = await this.run('setEnvState', [
      envId,
      state,
      opts.expected ?? '',
      opts.now ?? Date.now(),
    ]);
    return moved === 1;
  }

  /** Booted env: serve the head of the line, or join the warm index. */
  async markEnvWarm(
    envId: string,
    opts: { expected: EnvState; now?: number },
  ): Promise<{ ok: boolean; servedSessionId?: string }> {
    const res = (await this.run('markEnvWarm', [envId, opts.expected, opts.now ?? Date.now()])) as [
      number,
      string?,
    ];
    return { ok: res[0] === 1, servedSessionId: res[1] };
  }

  async removeEnv(envId: string): Promise<void> {
    const env = await this.getEnv(envId);
    const k = this.keys;
    const tx = this.redis.multi().del(k.env(envId), k.envTools(envId)).srem(k.envs, envId);
    if (env) {
      for (const s of ENV_STATES) tx.srem(k.stateSet(env.flavor, s), envId);
      tx.zrem(k.warm(env.flavor), envId);
    }
    await tx.exec();
  }

  /**
   * The env's tool inventory taken when it turned warm (JSON, see
   * src/sessions/integrity.ts), kept apart from the env's hash so listing
   * envs does not carry it. Removed with the env.
   */
  async setEnvToolsBaseline(envId: string, json: string): Promise<void> {
    await this.redis.set(this.keys.envTools(envId), json);
  }

  async envToolsBaseline(envId: string): Promise<string | undefined> {
    return (await this.redis.get(this.keys.envTools(envId))) ?? undefined;
  }

  async listEnvs(filter: { flavor?: string; state?: EnvState } = {}): Promise<EnvRecord[]> {
    const ids =
      filter.flavor && filter.state
        ? await this.redis.smembers(this.keys.stateSet(filter.flavor, filter.state))
        : await this.redis.smembers(this.keys.envs);
    const envs = await this.hgetallMany(ids.map((id) => this.keys.env(id)));
    return envs
      .map(toEnv)
      .filter((e): e is EnvRecord => e !== undefined)
      .filter(
        (e) =>
          (!filter.flavor || e.flavor === filter.flavor) &&
          (!filter.state || e.state === filter.state),
      )
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  /** Warm envs of a flavor in the order they will be claimed (oldest warm first). */
  async warmEnvIds(flavor: string): Promise<string[]> {
    return this.redis.zrange(this.keys.warm(flavor), 0, -1);
  }

  async countByState(flavor: string): Promise<Partial<Record<EnvState, number>>> {
    const pipe = this.redis.pipeline();
    for (const s of ENV_STATES) pipe.scard(this.keys.stateSet(flavor, s));
    const res = (await pipe.exec()) ?? [];
    return Object.fromEntries(ENV_STATES.map((s, i) => [s, Number(res[i]?.[1] ?? 0)]));
  }

  // ---- sessions -----------------------------------------------------------

  async requestSession(input: RequestSessionInput): Promise<RequestOutcome> {
    const res = (await this.run('requestSession', [
      input.sessionId,
      input.student,
      input.labId,
      input.flavor,
      input.requestId,
      input.publicKey,
      input.maxPerStudent,
      input.now,
    ])) as string[];
    const [outcome, id, extra] = res;
    switch (outcome) {
      case 'existing':
        return { outcome, session: (await this.getSession(id!))! };
      case 'taken':
        return { outcome };
      case 'limit': {
        const sessions = await Promise.all(res.slice(1).map((sid) => this.getSession(sid)));
        return { outcome, sessions: sessions.filter((s): s is SessionRecord => s !== undefined) };
      }
      case 'claimed':
        return { outcome, session: (await this.getSession(id!))! };
      default:
        return {
          outcome: 'waiting',
          session: (await this.getSession(id!))!,
          position: Number(extra),
        };
    }
  }

  async getSession(id: string): Promise<SessionRecord | undefined> {
    return toSession(await this.redis.hgetall(this.keys.session(id)));
  }

  async setSessionState(id: string, state: StoredSessionState): Promise<void> {
    await this.setSessionFields(id, { state });
  }

  /**
   * Updates plain fields of a live session. Never resurrects an ended one:
   * the state is read and the fields written in one script, so a session
   * that ends meanwhile keeps its end.
   */
  async setSessionFields(
    id: string,
    fields: Partial<
      Pick<
        SessionRecord,
        | 'expiresAt'
        | 'warnedAt'
        | 'connection'
        | 'state'
        | 'solvedAt'
        | 'score'
        | 'maxScore'
        | 'tools'
        | 'setupSlow'
      >
    >,
  ): Promise<void> {
    const flat = Object.entries(fields).filter(([, v]) => v !== undefined) as [
      string,
      string | number,
    ][];
    if (flat.length === 0) return;
    await this.run('setSessionFields', [id, ...flat.flat()]);
  }

  /**
   * Records where nodes of a live session are (their own fields, so two
   * nodes updated at once never undo each other); never resurrects an ended
   * session.
   */
  async setSessionGuests(id: string, guests: Partial<Record<string, GuestAddress>>): Promise<void> {
    const fields = Object.entries(guests)
      .filter((e): e is [string, GuestAddress] => e[1] !== undefined)
      .flatMap(([node, guest]) => [`${GUEST_FIELD}${node}`, JSON.stringify(guest)]);
    if (fields.length > 0) await this.run('setSessionFields', [id, ...fields]);
  }

  /**
   * Records the VMI uid each node of an active session runs now. The first
   * uid of a node is its identity; a uid not seen before is a restart,
   * recorded (node, `at`) once however many replicas see it, and one seen
   * before (a lagging watch) changes nothing. Returns the nodes whose restart
   * this call recorded.
   */
  async recordNodeVmis(
    id: string,
    input: { envId: string; at: number; nodes: { node: string; uid: string }[] },
  ): Promise<string[]> {
    const { envId, at, nodes } = input;
    if (nodes.length === 0) return [];
    const pairs = nodes.flatMap(({ node, uid }) => [node, uid]);
    return (await this.run('recordNodeVmis', [id, envId, at, ...pairs])) as string[];
  }

  async activateSession(
    id: string,
    input: { envId: string; readyAt: number; expiresAt: number; connection: string },
  ): Promise<boolean> {
    const res = await this.run('activateSession', [
      id,
      input.envId,
      input.readyAt,
      input.expiresAt,
      input.connection,
    ]);
    return res === 1;
  }

  /** Ends a session; returns what the caller needs to clean up, or undefined if it had already ended. */
  async endSession(
    id: string,
    reason: SessionEndReason,
    now = Date.now(),
    detail = '',
  ): Promise<{ id: string; student: string; labId: string; envId?: string } | undefined> {
    const res = (await this.run('endSession', [id, reason, now, detail])) as string[];
    if (res.length === 0) return undefined;
    return { id, student: res[0]!, labId: res[1]!, envId: res[2] || undefined };
  }

  async reassignSession(
    id: string,
    badEnvId: string,
    now = Date.now(),
  ): Promise<{ newEnvId?: string; ended?: boolean }> {
    const res = (await this.run('reassignSession', [id, badEnvId, now])) as string[];
    if (res.length === 0) return { ended: true };
    return { newEnvId: res[0] || undefined };
  }

  /** Reveals the next hint; undefined when all have been shown. */
  async takeHint(id: string, total: number): Promise<number | undefined> {
    const res = await this.run('takeHint', [id, total]);
    return typeof res === 'number' ? res : undefined;
  }

  async listSessions(filter: { student?: string } = {}): Promise<SessionRecord[]> {
    const ids = filter.student
      ? await this.redis.smembers(this.keys.student(filter.student))
      : await this.redis.smembers(this.keys.sessions);
    const sessions = (await this.hgetallMany(ids.map((id) => this.keys.session(id))))
      .map(toSession)
      .filter((s): s is SessionRecord => s !== undefined);
    if (!filter.student) {
      // Forget ids whose record expired.
      const gone = ids.filter((id) => !sessions.some((s) => s.id === id));
      if (gone.length > 0) await this.redis.srem(this.keys.sessions, ...gone);
    }
    return sessions.sort((a, b) => a.createdAt - b.createdAt);
  }

  async sessionsExpiringBefore(ts: number): Promise<SessionRecord[]> {
    const ids = await this.redis.zrangebyscore(this.keys.expiry, '-inf', ts);
    return (await this.hgetallMany(ids.map((id) => this.keys.session(id))))
      .map(toSession)
      .filter((s): s is SessionRecord => s !== undefined);
  }

  // ---- the waiting line ---------------------------------------------------

  /** The sessions waiting for an env of a flavor, first in line first. */
  async waitingSessionIds(flavor: string): Promise<string[]> {
    return this.redis.lrange(this.keys.line(flavor), 0, -1);
  }

  async waitingCount(flavor: string): Promise<number> {
    return this.redis.llen(this.keys.line(flavor));
  }

  /**
   * 1-based position in the flavor's line and an estimate in seconds: envs
   * already provisioning serve the first in line after (about) one average
   * provision time; each further "round" of as many envs as can be
   * provisioned at once takes another.
   */
  async queuePosition(
    id: string,
    opts: { maxParallel?: number } = {},
  ): Promise<{ position: number; estimateSeconds: number } | undefined> {
    const session = await this.getSession(id);
    if (!session || session.state !== 'waiting') return undefined;
    const index = await this.redis.lpos(this.keys.line(session.flavor), id);
    if (index === null) return undefined;
    const position = index + 1;
    const counts = await this.countByState(session.flavor);
    const inFlight = (counts.provisioning ?? 0) + (counts.booting ?? 0);
    const avg = await this.provisionEstimateMs(session.flavor);
    const parallel = Math.max(1, opts.maxParallel ?? Math.max(inFlight, 1));
    const rounds = Math.ceil(position / parallel);
    return { position, estimateSeconds: Math.round((rounds * avg) / 1000) };
  }

  async recordProvisionDuration(flavor: string, ms: number): Promise<void> {
    const key = this.keys.provisionMs(flavor);
    const prev = Number(await this.redis.get(key));
    const next = prev > 0 ? prev * (1 - EWMA_WEIGHT) + ms * EWMA_WEIGHT : ms;
    await this.redis.set(key, Math.round(next));
  }

  async provisionEstimateMs(flavor: string): Promise<number> {
    const v = Number(await this.redis.get(this.keys.provisionMs(flavor)));
    return v > 0 ? v : DEFAULT_PROVISION_MS;
  }

  // ---- capacity -----------------------------------------------------------

  async setCapacityBlocked(flavor: string, reason: string, ttlSeconds: number): Promise<void> {
    await this.redis.set(this.keys.capacity(flavor), reason, 'EX', Math.ceil(ttlSeconds));
  }

  async clearCapacityBlocked(flavor: string): Promise<void> {
    await this.redis.del(this.keys.capacity(flavor));
  }

  async capacityBlocked(flavor: string): Promise<string | undefined> {
    return (await this.redis.get(this.keys.capacity(flavor))) ?? undefined;
  }

  // ---- operators' warm targets -------------------------------------------

  async setWarmTargetOverride(flavor: string, target: number): Promise<void> {
    await this.redis.hset(this.keys.targetOverrides, flavor, String(target));
  }

  async clearWarmTargetOverride(flavor: string): Promise<void> {
    await this.redis.hdel(this.keys.targetOverrides, flavor);
  }

  /** Flavor → the warm target an operator set, for the flavors that have one. */
  async warmTargetOverrides(): Promise<Record<string, number>> {
    const raw = await this.redis.hgetall(this.keys.targetOverrides);
    const out: Record<string, number> = {};
    for (const [flavor, value] of Object.entries(raw)) {
      const n = Number(value);
      if (Number.isInteger(n) && n >= 0) out[flavor] = n;
    }
    return out;
  }

  // ---- recovery -----------------------------------------------------------

  /** False after Redis lost its data: the indexes must be rebuilt from the cluster first. */
  async isInitialized(): Promise<boolean> {
    return (await this.redis.exists(this.keys.initialized)) === 1;
  }

  /**
   * Replaces the env and session indexes with what the host cluster says.
   * Students still waiting in line (Redis-only state) are kept.
   */
  async rebuildFromSnapshot(snapshot: {
    envs: EnvSnapshot[];
    sessions: SessionSnapshot[];
  }): Promise<void> {
    const k = this.keys;
    const old = await this.redis.smembers(k.envs);
    const flavors = new Set([
      ...(await this.redis.smembers(k.flavors)),
      ...snapshot.envs.map((e) => e.flavor),
    ]);
    const tx = this.redis.multi();
    for (const id of old) tx.del(k.env(id));
    tx.del(k.envs);
    for (const f of flavors) {
      for (const s of ENV_STATES) tx.del(k.stateSet(f, s));
      tx.del(k.warm(f));
    }
    const now = Date.now();
    for (const env of snapshot.envs) {
      tx.hset(k.env(env.envId), {
        envId: env.envId,
        flavor: env.flavor,
        state: env.state,
        createdAt: env.createdAt,
        updatedAt: now,
        ...(env.sessionId ? { sessionId: env.sessionId } : {}),
      });
      tx.sadd(k.envs, env.envId)
        .sadd(k.flavors, env.flavor)
        .sadd(k.stateSet(env.flavor, env.state), env.envId);
      if (env.state === 'warm') tx.zadd(k.warm(env.flavor), env.createdAt, env.envId);
    }
    for (const s of snapshot.sessions) {
      const record: Record<string, string | number> = {
        id: s.id,
        student: s.student,
        labId: s.labId,
        flavor: s.flavor,
        state: s.state,
        requestId: s.requestId ?? s.id,
        publicKey: s.publicKey,
        createdAt: s.createdAt,
        hintsUsed: s.hintsUsed,
        moves: 0,
      };
      for (const f of [
        'envId',
        'claimedAt',
        'readyAt',
        'expiresAt',
        'warnedAt',
        'connection',
      ] as const) {
        const v = s[f];
        if (v !== undefined) record[f] = v;
      }
      tx.hset(k.session(s.id), record);
      tx.sadd(k.sessions, s.id).sadd(k.student(s.student), s.id);
      if (s.state === 'active' && s.expiresAt) tx.zadd(k.expiry, s.expiresAt, s.id);
    }
    tx.set(k.initialized, String(now));
    await tx.exec();
  }

  async markInitialized(): Promise<void> {
    await this.redis.set(this.keys.initialized, String(Date.now()));
  }

  // ---- students ---------------------------------------------------------

  /**
   * The web terminal bridge's public key, published by the API role that
   * holds its private half, for gateways in other processes (they hold no
   * copy of that key).
   */
  async setBridgePublicKey(publicKey: string): Promise<void> {
    await this.redis.set(this.keys.bridgeKey, publicKey);
  }

  async bridgePublicKey(): Promise<string | undefined> {
    return (await this.redis.get(this.keys.bridgeKey)) ?? undefined;
  }

  async setStudentPublicKey(student: string, publicKey: string): Promise<void> {
    await this.redis.set(this.keys.studentPublicKey(student), publicKey);
  }

  async studentPublicKey(student: string): Promise<string | undefined> {
    return (await this.redis.get(this.keys.studentPublicKey(student))) ?? undefined;
  }

  /** Adds a session to the student's history (kept to the latest `keep`, for 30 days). */
  async rememberSession(
    student: string,
    sessionId: string,
    createdAt: number,
    keep = 20,
  ): Promise<void> {
    const key = this.keys.history(student);
    await this.redis
      .multi()
      .zadd(key, createdAt, sessionId)
      .zremrangebyrank(key, 0, -keep - 1)
      .expire(key, 30 * 86400)
      .exec();
  }

  /** The student's latest sessions, newest first (ended ones while their record lasts). */
  async recentSessions(student: string, limit: number): Promise<SessionRecord[]> {
    const ids = await this.redis.zrevrange(this.keys.history(student), 0, limit - 1);
    return (await this.hgetallMany(ids.map((id) => this.keys.session(id))))
      .map(toSession)
      .filter((s): s is SessionRecord => s !== undefined);
  }

  // ---- one-time secrets, replay and rate limits --------------------------

  async putKeyLink(token: string, privateKey: string, ttlSeconds: number): Promise<void> {
    await this.redis.set(this.keys.keyLink(token), privateKey, 'EX', ttlSeconds);
  }

  /**
   * Takes a one-time download: the key the first time (to one taker only),
   * then `taken` for an hour, `unknown` for a link never made or expired.
   */
  async takeKeyLink(token: string): Promise<string | 'taken' | 'unknown'> {
    const [outcome, value] = (await this.run('takeKeyLink', [token, 3600])) as string[];
    return outcome === 'key' ? value! : outcome === 'taken' ? 'taken' : 'unknown';
  }

  /** Keeps a failure for operators' views (the latest `keep`). */
  async recordFailure(failure: { at: number; what: string }, keep = 50): Promise<void> {
    await this.redis
      .multi()
      .lpush(this.keys.failures, JSON.stringify(failure))
      .ltrim(this.keys.failures, 0, keep - 1)
      .exec();
  }

  async recentFailures(limit: number): Promise<{ at: number; what: string }[]> {
    const lines = await this.redis.lrange(this.keys.failures, 0, limit - 1);
    return lines.flatMap((line) => {
      try {
        return [JSON.parse(line) as { at: number; what: string }];
      } catch {
        return [];
      }
    });
  }

  /** True the first time `what` is marked within `ttlSeconds`, false for a repeat. */
  async markSeen(what: string, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.set(this.keys.seen(what), '1', 'EX', ttlSeconds, 'NX')) === 'OK';
  }

  /**
   * {@link markSeen} and, when `rate` is given, {@link countRequest} in one
   * round trip: a front door's checks of one request before it is answered.
   * A replay (`fresh: false`) is not counted.
   */
  async admitSignedRequest(
    seen: { what: string; ttlSeconds: number },
    rate?: { what: string; windowSeconds: number; now: number },
  ): Promise<{ fresh: boolean; count: number }> {
    const [fresh, count] = (await this.run('admitSignedRequest', [
      seen.what,
      seen.ttlSeconds,
      rate?.what ?? '',
      (rate?.windowSeconds ?? 0) * 1000,
      rate?.now ?? 0,
      rate ? `${rate.now}-${randomBytes(4).toString('hex')}` : '',
    ])) as [number, number];
    return { fresh: fresh === 1, count };
  }

  /**
   * Counts one request against `what` over the last `windowSeconds` (a
   * sliding window: no burst at a window's edge); returns the count with it.
   */
  async countRequest(what: string, windowSeconds: number, now = Date.now()): Promise<number> {
    const key = this.keys.rate(what);
    const member = `${now}-${randomBytes(4).toString('hex')}`;
    const res = (await this.redis
      .multi()
      .zremrangebyscore(key, '-inf', now - windowSeconds * 1000)
      .zadd(key, now, member)
      .zcard(key)
      .pexpire(key, windowSeconds * 1000)
      .exec()) as [unknown, unknown][];
    return res[2]![1] as number;
  }

  // ---- Slack delivery ------------------------------------------------------
  // A session's DM status message and what it shows, kept beside the session
  // (and as long as an ended one) so that any replica can edit it.

  /**
   * Counts one change to show in a session's Slack messages and returns its
   * number, and whether a status job must be queued for it: not when one
   * already waits to start (it renders whatever is latest when it runs),
   * unless that one is held back for the line position's edit interval and
   * this change is one of `state` (see {@link startSlackStatusRun}). The mark
   * lapses after `queuedMarkMs`, so a job lost between mark and queue costs
   * at most that long.
   */
  async bumpSlackVersion(
    sessionId: string,
    queuedMarkMs: number,
    change: SlackStatusChange = 'state',
  ): Promise<{ version: number; queue: boolean }> {
    // One round trip: the line moving touches every waiting student at each claim.
    const [version, queue] = (await this.run('bumpSlackVersion', [
      sessionId,
      queuedMarkMs,
      SLACK_MESSAGE_TTL_SECONDS,
      change,
    ])) as [number, number];
    return { version, queue: queue === 1 };
  }

  /**
   * A status job is about to run: if the session waits in line, its message
   * already shows it waiting and was edited less than `intervalMs` before
   * `now`, the job may only move the student's place in line, so it is held
   * back: returns when to run it (and marks it deferred, so later position
   * changes coalesce into it while a change of state queues its own job).
   * Otherwise returns undefined and clears the queued mark in the same
   * round trip: the run reads the latest state from here on.
   */
  async startSlackStatusRun(
    sessionId: string,
    now: number,
    intervalMs: number,
    queuedMarkMs: number,
  ): Promise<number | undefined> {
    const due = Number(
      await this.run('startSlackStatusRun', [sessionId, now, intervalMs, queuedMarkMs]),
    );
    return due > 0 ? due : undefined;
  }

  async slackMessageState(sessionId: string): Promise<SlackMessageState> {
    const h = await this.redis.hgetall(this.keys.slackMessage(sessionId));
    return {
      channel: h.channel || undefined,
      ts: h.ts || undefined,
      version: num(h.version) ?? 0,
      rendered: num(h.rendered) ?? 0,
      digest: h.digest || undefined,
      warnedFor: num(h.warnedFor),
      endedSent: h.endedSent === '1',
      target: h.target || undefined,
      postingSince: num(h.postingSince),
      renderedState: h.renderedState || undefined,
      editedAt: num(h.editedAt),
    };
  }

  /** Records where the session's Slack DMs go (its creator decides; see {@link SlackMessageState.target}). */
  async setSlackTarget(sessionId: string, userId: string): Promise<void> {
    await this.setSlackFields(sessionId, { target: userId });
  }

  /**
   * Claims the first post of the session's status message for `holdMs`
   * (longer than the post's own timeout): a second run meanwhile is told to
   * wait rather than post again. `lostTs`: the recorded message is known to
   * be gone (the student deleted it), so a new one may be posted.
   */
  async beginSlackPost(
    sessionId: string,
    token: string,
    holdMs: number,
    lostTs?: string,
  ): Promise<SlackPostClaim> {
    const [kind, a, b] = (await this.run('beginSlackPost', [
      sessionId,
      token,
      holdMs,
      SLACK_MESSAGE_TTL_SECONDS,
      lostTs ?? '',
    ])) as [string, string, string?];
    if (kind === 'posted') return { kind, channel: a, ts: b! };
    if (kind === 'in-flight') return { kind, untilMs: Number(a) };
    return { kind: 'begin', lostSince: a ? Number(a) : undefined };
  }

  /** Slack refused the post `token` claimed (nothing was posted): drop the claim. */
  async clearSlackPost(sessionId: string, token: string): Promise<void> {
    await this.run('clearSlackPost', [sessionId, token]);
  }

  private async setSlackFields(sessionId: string, fields: Record<string, string | number>) {
    const key = this.keys.slackMessage(sessionId);
    await this.redis.multi().hset(key, fields).expire(key, SLACK_MESSAGE_TTL_SECONDS).exec();
  }

  /**
   * Records the DM status message; the first one recorded wins and is
   * returned, unless `replace` (the recorded one is gone). Settles the post
   * claimed by {@link beginSlackPost} in the same step.
   */
  async recordSlackMessage(
    sessionId: string,
    channel: string,
    ts: string,
    options: { replace?: boolean } = {},
  ): Promise<{ channel: string; ts: string }> {
    const [c, t] = (await this.run('recordSlackMessage', [
      sessionId,
      channel,
      ts,
      SLACK_MESSAGE_TTL_SECONDS,
      options.replace ? 1 : 0,
    ])) as [string, string];
    return { channel: c, ts: t };
  }

  /** A status job of the session started: changes from now on queue a new one. */
  async clearSlackStatusQueued(sessionId: string): Promise<void> {
    await this.redis.del(this.keys.slackStatusQueued(sessionId));
  }

  /**
   * The status message shows every change up to `version` and the session
   * in `state`; `editedAt`: this run called Slack then (the line position's
   * edit interval counts from it). False if a newer version was recorded.
   */
  async markSlackDelivered(
    sessionId: string,
    version: number,
    digest: string,
    shown: { state: string; editedAt?: number },
  ): Promise<boolean> {
    const res = await this.run('markSlackDelivered', [
      sessionId,
      version,
      digest,
      SLACK_MESSAGE_TTL_SECONDS,
      shown.state,
      shown.editedAt ?? '',
    ]);
    return res === 1;
  }

  /** Records that a one-time DM went out: the warning for an expiry time, or the end. */
  async markSlackSent(
    sessionId: string,
    sent: { warnedFor: number } | { endedSent: true },
  ): Promise<void> {
    await this.setSlackFields(
      sessionId,
      'warnedFor' in sent ? { warnedFor: sent.warnedFor } : { endedSent: '1' },
    );
  }

  /** Takes the session's Slack lock for `ttlMs`; false when another holder has it. */
  async acquireSlackLock(sessionId: string, token: string, ttlMs: number): Promise<boolean> {
    const res = await this.redis.set(this.keys.slackLock(sessionId), token, 'PX', ttlMs, 'NX');
    return res === 'OK';
  }

  /** Keeps holding the lock for another `ttlMs`; false when it lapsed (another holder may have it). */
  async extendSlackLock(sessionId: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.run('extendSlackLock', [sessionId, token, ttlMs])) === 1;
  }

  async releaseSlackLock(sessionId: string, token: string): Promise<void> {
    await this.run('releaseSlackLock', [sessionId, token]);
  }

  /** Marks a check of the session as running; false when one already is (any replica). */
  async acquireCheckLock(sessionId: string, token: string, ttlMs: number): Promise<boolean> {
    const res = await this.redis.set(this.keys.checkLock(sessionId), token, 'PX', ttlMs, 'NX');
    return res === 'OK';
  }

  async releaseCheckLock(sessionId: string, token: string): Promise<void> {
    await this.run('releaseCheckLock', [sessionId, token]);
  }

  private async hgetallMany(keys: string[]): Promise<Record<string, string>[]> {
    if (keys.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const key of keys) pipe.hgetall(key);
    const res = (await pipe.exec()) ?? [];
    return res.map(([, v]) => (v ?? {}) as Record<string, string>);
  }
}

function num(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function toEnv(h: Record<string, string>): EnvRecord | undefined {
  if (!h.envId) return undefined;
  return {
    envId: h.envId,
    flavor: h.flavor ?? '',
    state: (h.state ?? 'failed') as EnvState,
    createdAt: num(h.createdAt) ?? 0,
    updatedAt: num(h.updatedAt) ?? 0,
    sessionId: h.sessionId || undefined,
  };
}

function toSession(h: Record<string, string>): SessionRecord | undefined {
  if (!h.id) return undefined;
  return {
    id: h.id,
    student: h.student ?? '',
    labId: h.labId ?? '',
    flavor: h.flavor ?? '',
    state: (h.state ?? 'waiting') as StoredSessionState,
    requestId: h.requestId ?? h.id,
    publicKey: h.publicKey ?? '',
    createdAt: num(h.createdAt) ?? 0,
    envId: h.envId || undefined,
    claimedAt: num(h.claimedAt),
    readyAt: num(h.readyAt),
    expiresAt: num(h.expiresAt),
    warnedAt: num(h.warnedAt) || undefined,
    hintsUsed: num(h.hintsUsed) ?? 0,
    moves: num(h.moves) ?? 0,
    endedReason: (h.endedReason || undefined) as SessionEndReason | undefined,
    endedAt: num(h.endedAt),
    connection: h.connection || undefined,
    endedDetail: h.endedDetail || undefined,
    solvedAt: num(h.solvedAt),
    score: num(h.score),
    maxScore: num(h.maxScore),
    nodeVmis: parseJson<Record<string, string[]>>(h.nodeVmis),
    nodeRestarts: parseJson<{ node: string; at: number }[]>(h.nodeRestarts),
    tools: h.tools || undefined,
    guests: guestsOf(h),
    setupSlow: h.setupSlow || undefined,
  };
}

function guestsOf(h: Record<string, string>): SessionRecord['guests'] {
  const guests: Partial<Record<string, GuestAddress>> = {};
  let any = false;
  for (const [field, value] of Object.entries(h)) {
    if (!field.startsWith(GUEST_FIELD)) continue;
    const guest = parseJson<GuestAddress>(value);
    if (!guest || typeof guest.ip !== 'string') continue;
    guests[field.slice(GUEST_FIELD.length)] = guest;
    any = true;
  }
  return any ? guests : undefined;
}

/** A JSON field written by a script; an unreadable one reads as absent. */
function parseJson<T>(text: string | undefined): T | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
