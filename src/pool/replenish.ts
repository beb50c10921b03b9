import { newEnvId } from '../kube/index.js';
import type { PoolContext } from './context.js';
import { targetsAt } from './targets.js';

export interface ReplenishDecision {
  flavor: string;
  warm: number;
  inFlight: number;
  live: number;
  waiting: number;
  target: number;
  created: number;
  blockedReason?: string;
}

/**
 * Brings each flavor's pool up to its target: warm + in-flight envs should
 * cover the warm target plus everyone waiting, within the flavor's maxTotal,
 * the global limit on envs being provisioned, and the host's capacity.
 * Runs only as a maintenance job, and the maintenance queue runs one job at a
 * time across every replica: two replenishers never race.
 */
export async function replenishPool(ctx: PoolContext): Promise<ReplenishDecision[]> {
  const decisions: ReplenishDecision[] = [];
  const targets = targetsAt(ctx.config, new Date(ctx.now()), await ctx.store.warmTargetOverrides());
  let inFlightAll = 0;
  const countsByFlavor = new Map<
    string,
    Awaited<ReturnType<PoolContext['store']['countByState']>>
  >();
  for (const t of targets) {
    const counts = await ctx.store.countByState(t.flavor);
    countsByFlavor.set(t.flavor, counts);
    inFlightAll += (counts.provisioning ?? 0) + (counts.booting ?? 0);
  }
  for (const t of targets) {
    const counts = countsByFlavor.get(t.flavor)!;
    const warm = counts.warm ?? 0;
    const inFlight = (counts.provisioning ?? 0) + (counts.booting ?? 0);
    // Every env that still holds VMs counts against maxTotal.
    const live =
      inFlight +
      warm +
      (counts.claimed ?? 0) +
      (counts.preparing ?? 0) +
      (counts.active ?? 0) +
      (counts.releasing ?? 0) +
      (counts.failed ?? 0);
    const waiting = await ctx.store.waitingCount(t.flavor);
    const wanted = t.minWarm + waiting;
    let need = Math.max(0, wanted - warm - inFlight);
    need = Math.min(need, Math.max(0, t.maxTotal - live));
    need = Math.min(need, Math.max(0, ctx.config.pool.maxProvisioning - inFlightAll));
    const blockedReason = await ctx.store.capacityBlocked(t.flavor);
    if (blockedReason && need > 0) {
      ctx.events.emit({
        type: 'pool.capacity',
        flavor: t.flavor,
        blocked: true,
        reason: blockedReason,
      });
      ctx.log.warn(
        { flavor: t.flavor, reason: blockedReason, need },
        'host cluster is full: not adding envs',
      );
      need = 0;
    }
    for (let i = 0; i < need; i++) {
      const envId = newEnvId();
      // Record first, then create on the cluster: a namespace with no record
      // is an orphan the reconciler may delete; a record with no namespace
      // is just a provision that has not started yet.
      await ctx.store.createEnv({ envId, flavor: t.flavor, createdAt: ctx.now() });
      ctx.events.emit({ type: 'env.state', envId, flavor: t.flavor, to: 'provisioning' });
      await ctx.queues.addProvision({ envId, flavor: t.flavor });
    }
    inFlightAll += need;
    decisions.push({
      flavor: t.flavor,
      warm,
      inFlight,
      live,
      waiting,
      target: t.minWarm,
      created: need,
      blockedReason,
    });
  }
  return decisions;
}
