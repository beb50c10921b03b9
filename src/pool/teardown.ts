import type { Job } from 'bullmq';
import { envNamespace, type NamespaceView, type SharedWatch } from '../kube/index.js';
import type { PoolContext } from './context.js';
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
    await ctx.store.setEnvState(envId, 'releasing', { expected: env.state, now: ctx.now() });
    ctx.events.emit({
      type: 'env.state',
      envId,
      flavor: env.flavor,
      from: env.state,
      to: 'releasing',
      reason,
    });
  }
  // Asked of the shared watch before the delete: a deletion the API server
  // finishes before its answer reaches us leaves the Namespace absent from
  // the watch, which without this would look like one it has not heard of
  // yet, and the wait below would last until its one-minute check.
  const watch = ctx.cluster.namespaces();
  await watch.synced();
  const watchedBefore = watch.get(namespace, namespace) !== undefined;
  const ns = await ctx.cluster.getNamespace(namespace);
  if (ns) {
    // No `releasing` label first: a Terminating Namespace says the same to
    // recovery (reconcile finishes its teardown), one write fewer per env.
    if (!ns.metadata?.deletionTimestamp) await ctx.cluster.deleteNamespace(namespace);
    await untilNamespaceGone(ctx, watch, namespace, watchedBefore);
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

/** How long the Namespace watch may stay silent about a deletion before the API server is asked. */
const CONFIRM_AFTER_MS = 60_000;

/**
 * Waits on the shared Namespace watch until the Namespace is gone. Its
 * absence from the watch counts only once the watch has seen it (`seen`:
 * before the delete, or since) or listed everything again since the delete:
 * a Namespace whose ADDED event has not arrived yet is absent too. A watch
 * that says nothing for a minute is checked with one read.
 */
async function untilNamespaceGone(
  ctx: PoolContext,
  watch: SharedWatch<NamespaceView>,
  namespace: string,
  seenBefore: boolean,
): Promise<void> {
  const deadline = ctx.now() + 10 * 60_000;
  const relistsAtStart = watch.relistCount;
  let seen = seenBefore;
  let quietSince = ctx.now();
  for (;;) {
    if (ctx.now() > deadline) throw new Error(`namespace ${namespace} still terminating`);
    const changed = watch.nextChange(namespace, CONFIRM_AFTER_MS);
    if (watch.get(namespace, namespace)) seen = true;
    else if (seen || watch.relistCount > relistsAtStart) return;
    if (ctx.now() - quietSince >= CONFIRM_AFTER_MS) {
      if (!(await ctx.cluster.getNamespace(namespace))) return;
      quietSince = ctx.now();
    }
    await changed;
  }
}
