import type { V1Namespace } from '@kubernetes/client-node';
import { ENV_STATES, type EnvState } from '../events/index.js';
import { ANNOTATIONS, LABELS } from '../kube/index.js';
import type { EnvSnapshot, SessionSnapshot } from '../store/index.js';
import type { PoolContext } from './context.js';
import { labelState } from './provision.js';

export interface ReconcileReport {
  rebuilt: boolean;
  adopted: number;
  orphansDeleted: string[];
  vanished: string[];
  jobsEnsured: number;
  labelsFixed: number;
}

/** An env as its Namespace on the host cluster describes it. */
export interface ClusterEnv {
  env: EnvSnapshot;
  session?: SessionSnapshot;
  namespace: string;
  terminating: boolean;
}

const MANAGED_BY = 'app.kubernetes.io/managed-by';

/** Reads an env (and its session, if any) back from its Namespace's labels and annotations. */
export function envFromNamespace(ns: V1Namespace): ClusterEnv | undefined {
  const labels = ns.metadata?.labels ?? {};
  const ann = ns.metadata?.annotations ?? {};
  if (labels[MANAGED_BY] !== 'labvirt') return undefined; // never ours to touch
  const envId = labels[LABELS.env];
  const flavor = labels[LABELS.flavor];
  if (!envId || !flavor) return undefined;
  const rawState = labels[LABELS.state] ?? 'provisioning';
  const state = (ENV_STATES as readonly string[]).includes(rawState)
    ? (rawState as EnvState)
    : 'failed';
  const createdAt = ns.metadata?.creationTimestamp
    ? new Date(ns.metadata.creationTimestamp).getTime()
    : Date.now();
  const sessionId = ann[ANNOTATIONS.session];
  const env: EnvSnapshot = { envId, flavor, state, createdAt, sessionId };
  let session: SessionSnapshot | undefined;
  if (sessionId && ['claimed', 'preparing', 'active'].includes(state)) {
    session = {
      id: sessionId,
      student: ann[ANNOTATIONS.student] ?? 'unknown',
      labId: ann[ANNOTATIONS.lab] ?? 'unknown',
      flavor,
      envId,
      state: state === 'active' ? 'active' : state === 'preparing' ? 'preparing' : 'claimed',
      createdAt: parseTime(ann[ANNOTATIONS.createdAt]) ?? createdAt,
      claimedAt: parseTime(ann[ANNOTATIONS.claimedAt]),
      readyAt: parseTime(ann[ANNOTATIONS.readyAt]),
      expiresAt: parseTime(ann[ANNOTATIONS.expiresAt]),
      publicKey: ann[ANNOTATIONS.studentKey] ?? '',
      hintsUsed: Number(ann[ANNOTATIONS.hintsUsed] ?? 0) || 0,
    };
  }
  return {
    env,
    session,
    namespace: ns.metadata?.name ?? '',
    terminating: Boolean(ns.metadata?.deletionTimestamp),
  };
}

/**
 * The session's annotations on its env's Namespace: what envFromNamespace
 * reads back after a Redis loss. The times only once the session has them.
 */
export function sessionAnnotations(
  session: Pick<
    SessionSnapshot,
    'id' | 'student' | 'labId' | 'publicKey' | 'createdAt' | 'claimedAt' | 'readyAt' | 'expiresAt'
  >,
): Record<string, string> {
  const iso = (t: number) => new Date(t).toISOString();
  return {
    [ANNOTATIONS.session]: session.id,
    [ANNOTATIONS.student]: session.student,
    [ANNOTATIONS.lab]: session.labId,
    [ANNOTATIONS.studentKey]: session.publicKey,
    [ANNOTATIONS.createdAt]: iso(session.createdAt),
    ...(session.claimedAt !== undefined && { [ANNOTATIONS.claimedAt]: iso(session.claimedAt) }),
    ...(session.readyAt !== undefined && { [ANNOTATIONS.readyAt]: iso(session.readyAt) }),
    ...(session.expiresAt !== undefined && { [ANNOTATIONS.expiresAt]: iso(session.expiresAt) }),
  };
}

/**
 * Level-triggered repair, run at start and on a schedule: rebuilds Redis's
 * indexes from the cluster when Redis lost them, re-queues work a crash left
 * half done, deletes namespaces labvirt owns that no record explains, and
 * forgets records whose namespace is gone. Touches only objects labelled
 * `app.kubernetes.io/managed-by=labvirt`.
 */
export async function reconcile(ctx: PoolContext): Promise<ReconcileReport> {
  const report: ReconcileReport = {
    rebuilt: false,
    adopted: 0,
    orphansDeleted: [],
    vanished: [],
    jobsEnsured: 0,
    labelsFixed: 0,
  };
  const namespaces = await ctx.cluster.listManagedNamespaces();
  const clusterEnvs = namespaces
    .map(envFromNamespace)
    .filter((e): e is ClusterEnv => e !== undefined);
  const inCluster = new Map(clusterEnvs.map((e) => [e.env.envId, e]));

  if (!(await ctx.store.isInitialized())) {
    const live = clusterEnvs.filter((e) => !e.terminating);
    await ctx.store.rebuildFromSnapshot({
      envs: live.map((e) => e.env),
      sessions: live.flatMap((e) => (e.session ? [e.session] : [])),
    });
    report.rebuilt = true;
    report.adopted = live.length;
    ctx.log.info({ envs: live.length }, 'rebuilt indexes from the host cluster');
    // Terminating namespaces still need their teardown to finish.
    for (const e of clusterEnvs.filter((x) => x.terminating)) {
      await ctx.queues.addTeardown({ envId: e.env.envId, reason: 'reconcile: terminating' });
    }
  }

  const graceMs = Math.max(60_000, ctx.config.pool.jobLockSeconds * 2000);
  const now = ctx.now();
  // Read before the envs, so every env a session names was there to be
  // listed: a session claiming an env made meanwhile is not taken for one
  // whose env vanished.
  const sessions = await ctx.store.listSessions({});
  const sessionById = new Map(sessions.map((s) => [s.id, s]));
  const records = await ctx.store.listEnvs({});
  const recorded = new Set(records.map((r) => r.envId));

  for (const e of clusterEnvs) {
    if (recorded.has(e.env.envId) || e.terminating) continue;
    if (now - e.env.createdAt < graceMs) continue; // may be a record being written right now
    ctx.log.warn({ envId: e.env.envId, namespace: e.namespace }, 'deleting orphaned env namespace');
    await ctx.cluster.deleteNamespace(e.namespace);
    report.orphansDeleted.push(e.env.envId);
  }

  for (const record of records) {
    const found = inCluster.get(record.envId);
    if (!found) {
      if (record.state === 'provisioning') {
        await ctx.queues.addProvision({ envId: record.envId, flavor: record.flavor });
        report.jobsEnsured++;
        continue;
      }
      // The namespace is gone (deleted by hand, or teardown finished before a crash).
      report.vanished.push(record.envId);
      if (record.sessionId) {
        const ended = await ctx.store.endSession(record.sessionId, 'failed', ctx.now());
        if (ended) {
          ctx.events.emit({
            type: 'session.ended',
            sessionId: ended.id,
            student: ended.student,
            labId: ended.labId,
            reason: 'failed',
            detail: 'the environment disappeared from the host cluster',
          });
        }
      }
      ctx.executor.closeEnv(record.envId);
      await ctx.store.removeEnv(record.envId);
      continue;
    }
    switch (record.state) {
      case 'provisioning':
      case 'booting':
        await ctx.queues.addProvision({ envId: record.envId, flavor: record.flavor });
        report.jobsEnsured++;
        break;
      case 'claimed':
      case 'preparing':
        if (record.sessionId) {
          await ctx.queues.addPrepare({ sessionId: record.sessionId, envId: record.envId });
          report.jobsEnsured++;
        }
        break;
      case 'releasing':
      case 'failed':
      case 'deleted':
        await ctx.queues.addTeardown({ envId: record.envId, reason: `reconcile: ${record.state}` });
        report.jobsEnsured++;
        break;
      default:
        break;
    }
    if (found.terminating || record.state === 'deleted') continue;
    // A write to the Namespace that failed (the claim's `active` label, an
    // extension's expiry) is made good here, with the session's annotations:
    // they are what a Redis loss rebuilds the session from.
    const session =
      record.sessionId && record.state === 'active' ? sessionById.get(record.sessionId) : undefined;
    const expiryStale =
      session?.expiresAt !== undefined && found.session?.expiresAt !== session.expiresAt;
    if (labelFor(found.env.state) !== labelFor(record.state) || expiryStale) {
      await labelState(
        ctx,
        record.envId,
        record.state,
        session ? sessionAnnotations(session) : {},
      ).catch(() => undefined);
      report.labelsFixed++;
    }
  }

  // Sessions whose env is gone from the records (e.g. ended by a crash midway).
  // One ended above reads as live here; ending it again does nothing.
  for (const session of sessions) {
    if (session.state === 'ended' || session.state === 'waiting' || !session.envId) continue;
    if (!recorded.has(session.envId) || report.vanished.includes(session.envId)) {
      const ended = await ctx.store.endSession(session.id, 'failed', ctx.now());
      if (ended) report.vanished.push(session.envId);
    }
  }
  return report;
}

/** The Namespace keeps `provisioning` while the VMs boot: both mean "run the provision job". */
function labelFor(state: string): string {
  return state === 'booting' ? 'provisioning' : state;
}

function parseTime(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}

/**
 * Asks for the reconcile that writes to the host what could not be written
 * (src/pool/reconcile.ts): its failure is logged, and the scheduled
 * reconcile remains.
 */
export async function requestHostRepair(ctx: PoolContext): Promise<void> {
  await ctx.queues
    .addHostRepair(ctx.config.pool.hostRepairDelaySeconds * 1000)
    .catch((err: unknown) =>
      ctx.log.warn({ err: (err as Error).message }, 'could not ask for a reconcile'),
    );
}
