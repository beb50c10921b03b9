import type { Redis } from 'ioredis';
import type { EventBus, LabvirtEvent } from '../events/index.js';
import { envNamespace } from '../kube/index.js';
import type { PoolContext } from '../pool/context.js';
import { envNodes, nodesOfFlavor } from '../pool/nodes.js';
import type { GatewaySession, SessionDirectory } from '../ssh/index.js';

export interface SessionDirectoryOptions {
  /**
   * How long a looked-up session is trusted without hearing of a change
   * (default 60 s): the watchdog for a lost notice and for node IPs that
   * changed when a VM restarted.
   */
  ttlMs?: number;
  now?: () => number;
}

export interface CachingSessionDirectory extends SessionDirectory {
  /** Forgets what it knows of a session (its state, expiry or env changed) and tells `onChange` listeners. */
  invalidate(sessionId: string): void;
  onChange(listener: (sessionId: string) => void): () => void;
  /** Sessions held in memory now. */
  readonly size: number;
}

/**
 * What the SSH gateway may know of a session: only active sessions, with the
 * student's key and the current IPs of their env's nodes.
 *
 * Kept in memory: a login, and the gateway's recheck of every open
 * connection, cost no Redis or Kubernetes call while the session is known.
 * Changes arrive through {@link linkSessionChanges} (Redis pub/sub, so every
 * replica hears them); the TTL bounds what a lost notice can cost.
 */
export function sessionDirectory(
  ctx: PoolContext,
  options: SessionDirectoryOptions = {},
): CachingSessionDirectory {
  const ttlMs = options.ttlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const known = new Map<string, { at: number; session: Promise<GatewaySession | undefined> }>();
  const listeners = new Set<(sessionId: string) => void>();

  async function fetch(sessionId: string): Promise<GatewaySession | undefined> {
    const session = await ctx.store.getSession(sessionId);
    if (!session || session.state !== 'active' || !session.envId || !session.expiresAt) {
      return undefined;
    }
    const env = await ctx.store.getEnv(session.envId);
    if (!env) return undefined;
    const nodes = await envNodes(
      ctx.cluster,
      envNamespace(ctx.config, session.envId),
      nodesOfFlavor(ctx.config, env.flavor),
    );
    return {
      sessionId,
      student: session.student,
      envId: session.envId,
      expiresAt: new Date(session.expiresAt),
      publicKeys: [session.publicKey],
      nodes,
    };
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
    case 'session.node-restarted': // a replaced VM may have a new IP
      return event.sessionId;
    default:
      return undefined;
  }
}

/**
 * Publishes this process's session changes on a Redis channel and applies
 * every replica's to the directory. Returns a function that stops both.
 */
export async function linkSessionChanges(options: {
  directory: CachingSessionDirectory;
  events: EventBus;
  publisher: Redis;
  /** A connection of its own: a subscribed connection can do nothing else. */
  subscriber: Redis;
  channel: string;
}): Promise<() => Promise<void>> {
  const { directory, publisher, subscriber, channel } = options;
  subscriber.on('message', (from: string, sessionId: string) => {
    if (from === channel) directory.invalidate(sessionId);
  });
  await subscriber.subscribe(channel);
  const off = options.events.onAny((event) => {
    const sessionId = changedSession(event);
    if (!sessionId) return;
    // Here at once; other replicas when the message arrives.
    directory.invalidate(sessionId);
    void publisher.publish(channel, sessionId).catch(() => undefined);
  });
  return async () => {
    off();
    subscriber.disconnect();
  };
}
