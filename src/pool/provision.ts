import type { Job } from 'bullmq';
import {
  ANNOTATIONS,
  LABELS,
  envNamespace,
  generateEnvSecrets,
  readEnvSecrets,
  renderEnvironment,
  subjectOfUser,
} from '../kube/index.js';
import { apiErrorMessage, isApiError } from '../kube/client.js';
import type { PoolContext } from './context.js';
import { inspectEnvVmis, nodeAddresses, nodesOfFlavor, watchedEnvVmis } from './nodes.js';
import { markReported, type ProvisionJob } from './queues.js';
import { takeToolsBaseline } from '../sessions/integrity.js';

const IN_FLIGHT = new Set(['provisioning', 'booting']);

/**
 * Provisioning as a reconciler: it looks at the env as it is and moves it on.
 * Running it again (a retry, a crashed worker's job picked up elsewhere, a
 * reconcile pass) is safe: objects that exist are kept, secrets are reused.
 */
export async function provisionEnv(ctx: PoolContext, job: Job<ProvisionJob>): Promise<void> {
  const { envId, flavor } = job.data;
  const env = await ctx.store.getEnv(envId);
  if (!env || !IN_FLIGHT.has(env.state)) return; // stale job: someone else moved it on
  const attempt = job.attemptsMade + 1;
  const lastAttempt = attempt >= (job.opts.attempts ?? 1);
  const log = ctx.log.child({ envId, flavor, attempt });
  try {
    await bringUp(ctx, envId, flavor, env.state, env.createdAt);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    log[ctx.cluster.reachability.levelFor(err)]({ reason }, 'provision attempt failed');
    markReported(err);
    ctx.events.emit({
      type: 'env.failed',
      envId,
      flavor,
      attempt,
      willRetry: !lastAttempt,
      reason,
    });
    if (!lastAttempt) throw err;
    // Out of attempts: never leak it. The replenisher makes a fresh one.
    const moved = await ctx.store.setEnvState(envId, 'failed', {
      expected: env.state,
      now: ctx.now(),
    });
    if (moved) {
      ctx.events.emit({ type: 'env.state', envId, flavor, from: env.state, to: 'failed', reason });
      await labelState(ctx, envId, 'failed').catch(() => undefined);
    }
    await ctx.queues.addTeardown({ envId, reason: `provision failed: ${reason}` });
  }
}

async function bringUp(
  ctx: PoolContext,
  envId: string,
  flavor: string,
  state: string,
  createdAt: number,
): Promise<void> {
  const namespace = envNamespace(ctx.config, envId);
  const deadline = createdAt + ctx.config.pool.provisionDeadlineSeconds * 1000;
  const expected = nodesOfFlavor(ctx.config, flavor);

  if (state === 'provisioning') {
    // Reuse the env's CA, token and SSH keys if a previous attempt created
    // them, so every VM of the env trusts the same control plane and shows
    // the host key labvirt recorded for it.
    const secrets = (await earlierSecrets(ctx, namespace)) ?? (await generateEnvSecrets());
    const objects = renderEnvironment({
      config: ctx.config,
      flavor,
      envId,
      secrets,
      operator: subjectOfUser(await ctx.cluster.whoAmI()),
    });
    await ctx.cluster.createAll(objects, deadline);
    // Not written to the Namespace: for recovery, provisioning and booting
    // mean the same (run this job again), so the label stays `provisioning`.
    if (
      await ctx.store.setEnvState(envId, 'booting', { expected: 'provisioning', now: ctx.now() })
    ) {
      ctx.events.emit({ type: 'env.state', envId, flavor, from: 'provisioning', to: 'booting' });
    }
  }

  // Wait for every VMI to run, then for cloud-init's readiness marker. The
  // VMIs' progress comes from the shared watch (no read per env); every
  // change in this env's namespace wakes the loop.
  const vmis = ctx.cluster.vmis();
  await vmis.synced();
  const recheckMs = ctx.config.pool.pollSeconds * 1000;
  // VMIs deleted for a fresh boot, by name: the uid of the one deleted.
  const restarted = new Map<string, string | undefined>();
  for (;;) {
    if (ctx.now() > deadline) throw new Error('deadline passed before every VM was running');
    const changed = vmis.nextChange(namespace, Math.min(recheckMs, deadline - ctx.now()));
    let report = watchedEnvVmis(ctx.cluster, namespace, expected);
    // A failure is acted on (a VMI deleted, an attempt failed) only as the API
    // server sees it now: the watch may lag behind a delete it has not delivered.
    if (report.failed.length > 0) report = await inspectEnvVmis(ctx.cluster, namespace, expected);
    if (report.unschedulable.length > 0) {
      const reason = `VM ${report.unschedulable[0]?.name} of env ${envId} cannot be scheduled: ${report.unschedulable[0]?.reason ?? 'no room'}`;
      const already = await ctx.store.capacityBlocked(flavor);
      await ctx.store.setCapacityBlocked(
        flavor,
        reason,
        Math.max(60, ctx.config.pool.pollSeconds * 10),
      );
      if (!already) {
        ctx.events.emit({ type: 'pool.capacity', flavor, blocked: true, reason });
        ctx.log.warn({ envId, flavor, reason }, 'host cluster is full');
      }
    }
    if (report.failed.length > 0) {
      // A VMI that failed to boot is replaced once per attempt; a second
      // failure fails the attempt (and BullMQ retries with backoff).
      // The watch may still show the failed VMI just deleted: that is not a second failure.
      const current = report.failed.filter(
        (v) => !restarted.has(v.name) || restarted.get(v.name) !== v.uid,
      );
      const again = current.filter((v) => restarted.has(v.name));
      if (again.length > 0) {
        throw new Error(`VM ${again.map((v) => v.name).join(', ')} failed to boot`);
      }
      for (const vmi of current) {
        await ctx.cluster.deleteVmi(namespace, vmi.name);
        restarted.set(vmi.name, vmi.uid);
      }
    }
    // Addresses come from the launcher pods, read once every VM runs; a pod
    // without one yet is looked at again at the next change.
    const addressed = report.allRunning
      ? await nodeAddresses(ctx.cluster, namespace, report.running)
      : undefined;
    if (addressed && addressed.unknown.length === 0) {
      await Promise.all(
        addressed.nodes.map((node) =>
          ctx.executor.waitReady(
            { envId, node: node.node, ip: node.ip },
            { timeoutMs: Math.max(1000, deadline - ctx.now()) },
          ),
        ),
      );
      // The tools checks rely on, hashed now (before any student or lab
      // touched the env) so that prepare only hashes what the lab's setup
      // changed: kubectl alone is a 50 MB file, and a class claims at once.
      const baseline = await takeToolsBaseline(
        { executor: ctx.executor, envId, nodes: addressed.nodes },
        { timeoutSeconds: Math.max(1, Math.ceil((deadline - ctx.now()) / 1000)) },
      );
      await ctx.store.setEnvToolsBaseline(envId, JSON.stringify(baseline));
      // A warm env holds no SSH connection; the claim connects again (host keys stay pinned).
      ctx.executor.releaseEnv(envId);
      break;
    }
    await changed;
  }

  const provisionMs = ctx.now() - createdAt;
  // On the sessions' clock (ctx.now): a waiting student served here is claimed at it.
  const result = await ctx.store.markEnvWarm(envId, { expected: 'booting', now: ctx.now() });
  if (!result.ok) return; // someone else moved it on (torn down meanwhile)
  await ctx.store.recordProvisionDuration(flavor, provisionMs);
  ctx.events.emit({ type: 'env.state', envId, flavor, from: 'booting', to: 'warm', provisionMs });
  if (result.servedSessionId) {
    // A student was waiting: the env went straight to them.
    ctx.events.emit({
      type: 'env.state',
      envId,
      flavor,
      from: 'warm',
      to: 'claimed',
      sessionId: result.servedSessionId,
    });
    // The prepare job writes the claim onto the Namespace (state preparing).
    await ctx.queues.addPrepare({ sessionId: result.servedSessionId, envId });
  } else {
    await labelState(ctx, envId, 'warm');
  }
  // A slot for provisioning just freed: the pool may still be short of its
  // target (the global provisioning limit held some back).
  await ctx.queues.addMaintenance('replenish');
}

/** Writes the env's state onto its Namespace: the host cluster is the source of truth. */
export async function labelState(
  ctx: PoolContext,
  envId: string,
  state: string,
  annotations: Record<string, string | null> = {},
): Promise<void> {
  try {
    await ctx.cluster.patchNamespaceMeta(envNamespace(ctx.config, envId), {
      labels: { [LABELS.state]: state },
      annotations,
    });
  } catch (err) {
    throw new Error(`recording state ${state} of env ${envId}: ${apiErrorMessage(err)}`, {
      cause: err,
    });
  }
}

export { ANNOTATIONS };

/**
 * The secrets an earlier attempt stored. labvirt may read Secrets only where
 * it bound its env role: a refusal means the Namespace or the binding is not
 * there yet, so no attempt stored any (they are created after the binding).
 */
async function earlierSecrets(ctx: PoolContext, namespace: string) {
  // A first attempt finds no Namespace: nothing to read (and no refusal to log).
  if (!(await ctx.cluster.getNamespace(namespace))) return undefined;
  try {
    return await readEnvSecrets(ctx.cluster, namespace);
  } catch (err) {
    if (isApiError(err, 403)) return undefined;
    throw err;
  }
}
