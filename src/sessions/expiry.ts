import type { PoolContext } from '../pool/context.js';

export interface ExpirySweepResult {
  warned: string[];
  expired: string[];
}

/**
 * Warns students `warnBeforeMinutes` ahead of the end (once per expiry time:
 * extending clears the warning) and ends sessions whose time is up. Expired
 * envs are torn down, never reused.
 */
export async function sweepExpiredSessions(ctx: PoolContext): Promise<ExpirySweepResult> {
  const now = ctx.now();
  const warnMs = ctx.config.sessions.warnBeforeMinutes * 60_000;
  const result: ExpirySweepResult = { warned: [], expired: [] };
  for (const session of await ctx.store.sessionsExpiringBefore(now + warnMs)) {
    if (session.state !== 'active' || !session.expiresAt) continue;
    if (session.expiresAt <= now) {
      const ended = await ctx.store.endSession(session.id, 'expired', now);
      if (!ended) continue;
      if (ended.envId) await ctx.queues.addTeardown({ envId: ended.envId, reason: 'expired' });
      ctx.events.emit({
        type: 'session.ended',
        sessionId: session.id,
        student: session.student,
        labId: session.labId,
        reason: 'expired',
      });
      result.expired.push(session.id);
    } else if (!session.warnedAt) {
      await ctx.store.setSessionFields(session.id, { warnedAt: now });
      ctx.events.emit({
        type: 'session.warning',
        sessionId: session.id,
        student: session.student,
        expiresAt: new Date(session.expiresAt).toISOString(),
        minutesLeft: Math.max(1, Math.round((session.expiresAt - now) / 60_000)),
      });
      result.warned.push(session.id);
    }
  }
  if (result.expired.length > 0) await ctx.queues.addMaintenance('replenish');
  return result;
}
