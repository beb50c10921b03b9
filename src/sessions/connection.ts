import { envNamespace } from '../kube/index.js';
import type { PoolContext } from '../pool/context.js';
import type { ConnectionDetails } from './types.js';

/** Name of the per-env NodePort Service in `ssh.mode: nodeport`. */
export const NODEPORT_SERVICE = 'ssh';

/** How the student reaches their env, for the configured access mode. */
export async function connectionFor(
  ctx: Pick<PoolContext, 'config' | 'cluster'>,
  sessionId: string,
  envId: string,
  nodes: string[],
): Promise<ConnectionDetails> {
  const { ssh } = ctx.config;
  const keyFile = `labvirt-${sessionId}.key`;
  if (ssh.mode === 'gateway') {
    return {
      mode: 'gateway',
      host: ssh.publicHost,
      port: ssh.gatewayPort,
      user: sessionId,
      command: `ssh -i ${keyFile} -p ${ssh.gatewayPort} ${sessionId}@${ssh.publicHost}`,
      nodes,
    };
  }
  const service = await ctx.cluster.core.readNamespacedService({
    namespace: envNamespace(ctx.config, envId),
    name: NODEPORT_SERVICE,
  });
  const port = service.spec?.ports?.find((p) => p.port === 22)?.nodePort;
  if (!port) throw new Error(`env ${envId} has no SSH NodePort yet`);
  return {
    mode: 'nodeport',
    host: ssh.publicHost,
    port,
    user: 'student',
    command: `ssh -i ${keyFile} -p ${port} student@${ssh.publicHost}`,
    nodes,
  };
}
