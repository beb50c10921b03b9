import type { Redis } from 'ioredis';
import type { EventBus, LabvirtEvent } from '../events/index.js';
import { envNamespace } from '../kube/index.js';
import type { PoolContext } from '../pool/context.js';
import { envNodes, nodesOfFlavor } from '../pool/nodes.js';
import type { EnvIdentitySource, GatewaySession, SessionDirectory } from '../ssh/index.js';
import type { Store } from '../store/index.js';
import { recordedNodes } from './guests.js';

/** Finds the nodes of a session activated before its nodes were recorded in Redis. */
export type LegacyNodeSource = (session: {
  envId: string;
  flavor: string;
}) => Promise<GatewaySession['nodes']>;

export interface SessionDirectoryOptions {
  /**
   * How long a looked-up session is trusted without hearing of a change
   * (default 60 s): the watchdog for a lost notice.
   */
  ttlMs?: number;
  now?: () => number;
  /**
   * Where a process with cluster access finds the nodes of a session that
   * predates the nodes' record in Redis (its hop then uses the env's key,
   * the only one its nodes trust). Without it, such a session is refused
   * with a word to ask an operator.
   */
  legacyNodes?: LegacyNodeSource;
}

export interface CachingSessionDirectory extends SessionDirectory {
  /** Forgets what it knows of a session (its state, expiry or env changed) and tells `onChange` listeners. */
  invalidate(sessionId: string): void;
  onChange(listener: (sessionId: string) => void): () => void;
  /** Sessions held in memory now. */
  readonly size: number;
}

/** Told to a student whose session began before the gateway had its own key. */
export const PREDATES_GATEWAY =
  'your session started before this SSH gateway was installed, and it cannot reach your environment: ' +
  'ask an operator (or stop the lab and start it again)';

/**
 * The cluster fallback for sessions without recorded nodes: the env's
 * launcher pod addresses and the host keys of its PKI Secret.
 */
export function clusterNodes(ctx: PoolContext, identity: EnvIdentitySource): LegacyNodeSource {
  return async ({ envId, flavor }) => {
    const [nodes, { hostKeys }] = await Promise.all([
      envNodes(ctx.cluster, envNamespace(ctx.config, envId), nodesOfFlavor(ctx.config, flavor)),
      identity(envId),
    ]);
    return nodes.map((n) => ({ ...n, ...(hostKeys[n.node] ? { hostKey: hostKeys[n.node] } : {}) }));
  };
}

/**
 * What the SSH gateway may know of a session: only active sessions, with the
 * student's key and where the env's nodes are — all read from Redis, so the
 * gateway needs no cluster access (src/sessions/prepare.ts records the
 * nodes at activation, src/sessions/restarts.ts when one moves).
 *
 * Kept in memory: a login, and the gateway's recheck of every open
 * connection, cost no Redis call while the session is known. Changes arrive
 * through {@link followSessionChanges} (Redis pub/sub, so every replica
 * hears them); the TTL bounds what a lost notice can cost.
 */
export function sessionDirectory(
  store: Pick<Store, 'getSession'>,
  options: SessionDirectoryOptions = {},
): CachingSessionDirectory {
  const ttlMs = options.ttlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const known = new Map<string, { at: number; session: Promise<GatewaySession | undefined> }>();
  const listeners = new Set<(sessionId: string) => void>();

  async function fetch(sessionId: string): Promise<GatewaySession | undefined> {
    const session = await store.getSession(sessionId);
    if (!session || session.state !== 'active' || !session.envId || !session.expiresAt) {
      return undefined;
    }
    const found = {
      sessionId,
      student: session.student,
      envId: session.envId,
      expiresAt: new Date(session.expiresAt),
      publicKeys: [session.publicKey],
    };
    if (session.guests)
      return { ...found, nodes: recordedNodes(session.guests), hopKey: 'gateway' };
    if (!options.legacyNodes) return { ...found, nodes: [], refusal: PREDATES_GATEWAY };
    const nodes = await options.legacyNodes({ envId: session.envId, flavor: session.flavor });
    return { ...found, nodes, hopKey: 'env' };
  }

  function sweep(t: number) {
    for (const [id, entry] of known) if (t - entry.at >= ttlMs) known.delete(id);
  }

  return {
    async lookup(sessionId: string): Promise<GatewaySession | undefined> {
      if (!/^s-[a-z0-9]{10}$/.test(sessionId)) return undefined;
      const t = now();
      const cached = known.get(sessionId);
      if (cached && t - cached.at < ttlMs) return cached.session;
      if (known.size >= 10_000) sweep(t);
      const entry = { at: t, session: fetch(sessionId) };
      known.set(sessionId, entry);
      // Only active sessions are kept: one that is not (yet) active, or a
      // failed lookup, is asked again next time.
      const forget = () => {
        if (known.get(sessionId) === entry) known.delete(sessionId);
      };
      entry.session.then((s) => s ?? forget(), forget);
      return entry.session;
    },
    invalidate(sessionId: string) {
      known.delete(sessionId);
      for (const listener of listeners) listener(sessionId);
    },
    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    get size() {
      return known.size;
    },
  };
}

/** Events after which the gateway must look a session up again. */
function changedSession(event: LabvirtEvent): string | undefined {
  switch (event.type) {
    case 'session.ready':
    case 'session.extended':
    case 'session.ended':
    case 'session.moved':
    case 'session.node-restarted':
    case 'session.node-reachable': // a replaced VM's new address
      return event.sessionId;
    default:
      return undefined;
  }
}

/**
 * Publishes this process's session changes on a Redis channel, for the
 * gateways of every process (a gateway-only process makes none of these
 * changes: the orchestrator's roles do). Returns a function that stops.
 */
export function publishSessionChanges(options: {
  events: EventBus;
  publisher: Redis;
  channel: string;
}): () => void {
  const { publisher, channel } = options;
  return options.events.onAny((event) => {
    const sessionId = changedSession(event);
    if (sessionId) void publisher.publish(channel, sessionId).catch(() => undefined);
  });
}

/**
 * Applies every replica's session changes to the directory: those published
 * on the Redis channel, and at once this process's own (when `events` is
 * given). Returns a function that stops.
 */
export async function followSessionChanges(options: {
  directory: CachingSessionDirectory;
  events?: EventBus;
  /** A connection of its own: a subscribed connection can do nothing else. */
  subscriber: Redis;
  channel: string;
}): Promise<() => Promise<void>> {
  const { directory, subscriber, channel } = options;
  subscriber.on('message', (from: string, sessionId: string) => {
    if (from === channel) directory.invalidate(sessionId);
  });
  await subscriber.subscribe(channel);
  const off = options.events?.onAny((event) => {
    const sessionId = changedSession(event);
    // Here at once; the published notice follows.
    if (sessionId) directory.invalidate(sessionId);
  });
  return async () => {
    off?.();
    subscriber.disconnect();
  };
}

/** Both halves, for a process that makes changes and runs a gateway. */
export async function linkSessionChanges(options: {
  directory: CachingSessionDirectory;
  events: EventBus;
  publisher: Redis;
  subscriber: Redis;
  channel: string;
}): Promise<() => Promise<void>> {
  const stopPublishing = publishSessionChanges(options);
  const stopFollowing = await followSessionChanges(options);
  return async () => {
    stopPublishing();
    await stopFollowing();
  };
}
