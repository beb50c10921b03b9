import type { PoolContext } from '../pool/context.js';
import type { EnvNode, NodeName } from '../pool/nodes.js';
import type { SessionRecord } from '../store/index.js';

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

/**
 * The session's nodes as recorded for the gateway, when every one of
 * `expected` is there. The record follows a restarted node to its new
 * address (src/sessions/restarts.ts), so it serves when the host API server
 * cannot answer for the nodes now.
 */
export function recordedNodes(
  session: Pick<SessionRecord, 'guests'>,
  expected: readonly NodeName[],
): EnvNode[] | undefined {
  const nodes = expected.flatMap((node) => {
    const ip = session.guests?.[node]?.ip;
    return ip ? [{ node, ip }] : [];
  });
  return nodes.length === expected.length ? nodes : undefined;
}
