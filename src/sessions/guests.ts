import type { PoolContext } from '../pool/context.js';
import type { EnvNode } from '../pool/nodes.js';

/**
 * Records with the session where each of its nodes is and the host key it
 * must show (public data): everything the SSH gateway needs besides Redis,
 * so a gateway without cluster access can take the student there.
 */
export async function recordGuests(
  ctx: PoolContext,
  sessionId: string,
  envId: string,
  nodes: EnvNode[],
): Promise<void> {
  const guests = await Promise.all(
    nodes.map(async ({ node, ip }) => {
      const hostKey = await ctx.executor.hostKeyOf(envId, node);
      return [node, { ip, ...(hostKey ? { hostKey } : {}) }] as const;
    }),
  );
  await ctx.store.setSessionGuests(sessionId, Object.fromEntries(guests));
}
