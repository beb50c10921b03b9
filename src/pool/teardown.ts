import type { Job } from 'bullmq';
import { envNamespace } from '../kube/index.js';
import type { PoolContext } from './context.js';
import { labelState } from './provision.js';
import type { TeardownJob } from './queues.js';

/**
 * Deletes an env's Namespace (and so everything in it) and waits until the
 * API server has really removed it — deletion is asynchronous, and an env
 * counted as gone while its VMs still hold capacity would over-fill the host.
 */
export async function teardownEnv(ctx: PoolContext, job: Job<TeardownJob>): Promise<void> {
  const { envId, reason } = job.data;
  const namespace = envNamespace(ctx.config, envId);
  const env = await ctx.store.getEnv(envId);
  const log = ctx.log.child({ envId, reason });
  if (env && env.state !== 'releasing' && env.state !== 'failed') {
    await ctx.store.setEnvState(envId, 'releasing', { expected: env.state });
    ctx.events.emit({
      type: 'env.state',
      envId,
      flavor: env.flavor,
      from: env.state,
      to: 'releasing',
      reason,
    });
  }
  const ns = await ctx.cluster.getNamespace(namespace);
  if (ns) {
    if (!ns.metadata?.deletionTimestamp) {
      await labelState(ctx, envId, 'releasing').catch(() => undefined);
      await ctx.cluster.deleteNamespace(namespace);
    }
    const deadline = ctx.now() + 10 * 60_000;
    const pollMs = Math.max(50, ctx.config.pool.pollSeconds * 1000);
    while (await ctx.cluster.getNamespace(namespace)) {
      if (ctx.now() > deadline) throw new Error(`namespace ${namespace} still terminating`);
      await sleep(pollMs);
    }
  }
  ctx.executor.closeEnv(envId);
  await ctx.store.removeEnv(envId);
  log.info('env deleted');
  if (env) {
    ctx.events.emit({
      type: 'env.state',
      envId,
      flavor: env.flavor,
      from: 'releasing',
      to: 'deleted',
      reason,
    });
  }
  // Room freed: the pool may grow again.
  await ctx.queues.addMaintenance('replenish');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
