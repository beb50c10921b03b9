import { envNamespace } from '../kube/index.js';
import type { PoolContext } from '../pool/context.js';
import { envNodes, nodesOfFlavor } from '../pool/nodes.js';
import type { GatewaySession, SessionDirectory } from '../ssh/index.js';

/**
 * What the SSH gateway may know of a session: only active sessions, with the
 * student's key and the current IPs of their env's nodes.
 */
export function sessionDirectory(ctx: PoolContext): SessionDirectory {
  return {
    async lookup(sessionId: string): Promise<GatewaySession | undefined> {
      if (!/^s-[a-z0-9]{10}$/.test(sessionId)) return undefined;
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
    },
  };
}
