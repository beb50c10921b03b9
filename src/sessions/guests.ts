import type { PoolContext } from '../pool/context.js';
import type { EnvNode, NodeName } from '../pool/nodes.js';
import type { GatewaySession } from '../ssh/index.js';
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

const NODE_ORDER: NodeName[] = ['control-plane', 'worker-1', 'worker-2'];

/**
 * The nodes recorded with the session at activation (and after restarts),
 * control plane first: where the gateway takes the student, and where a
 * check finds the nodes when the host API server cannot answer.
 */
export function recordedNodes(
  guests: NonNullable<SessionRecord['guests']>,
): GatewaySession['nodes'] {
  return NODE_ORDER.flatMap((node) => {
    const guest = guests[node];
    return guest
      ? [{ node, ip: guest.ip, ...(guest.hostKey ? { hostKey: guest.hostKey } : {}) }]
      : [];
  });
}
