import type { Job } from 'bullmq';
import { ANNOTATIONS, envNamespace, outlastOutage } from '../kube/index.js';
import type { PoolContext } from '../pool/context.js';
import { envNodes, nodesOfFlavor, type EnvNode } from '../pool/nodes.js';
import { labelState } from '../pool/provision.js';
import { requestHostRepair, sessionAnnotations } from '../pool/reconcile.js';
import type { PrepareJob } from '../pool/queues.js';
import { connectionFor } from './connection.js';
import { recordGuests } from './guests.js';
import { recordNodeVmis } from './restarts.js';
import { INVENTORY_STEP, parseToolsBaseline, recordTools } from './integrity.js';
import {
  labScripts,
  runSteps,
  ScriptFailedError,
  selectNodes,
  SlowGuestPatience,
} from './scripts.js';

/**
 * A setup step that timed out runs once more with this many times its
 * timeout (and so do the steps after it). At a class-sized burst every
 * setup runs at once and a guest can take several times its quiet-machine
 * time; a script that hangs costs this much longer before the student hears.
 */
export const SLOW_SETUP_TIMEOUT_FACTOR = 3;

/**
 * How long a claim's own writes to the host wait out its API server being
 * unavailable (a control plane restarting, an upgrade) before the env is
 * given up as for any other failure.
 */
const CLAIM_OUTAGE_PATIENCE = { budgetMs: 120_000 };

/**
 * Hands a claimed env to its student: adds their key, runs the lab's setup
 * (the "break") and prepare scripts, and only then lets them in.
 *
 * What a failure says about the env:
 * - a setup step that runs out of time says the guest is slow, not broken:
 *   it runs again on the same env with more time (SlowGuestPatience); out
 *   of time again, the session fails as "setup did not finish in time" and
 *   the env is released as after any session. Moving the student would take
 *   another warm env from the next student and tear a healthy one down —
 *   at a burst, that drains the pool (issue #12).
 * - the env itself failing (SSH unreachable, a host key that changed, a VMI
 *   gone, the key install refused) or a setup step exiting non-zero on this
 *   env: the student moves to another env, keeping their place
 *   (`pool.maxSetupMoves`), and the broken one is torn down.
 */
export async function prepareSession(ctx: PoolContext, job: Job<PrepareJob>): Promise<void> {
  const { sessionId, envId } = job.data;
  // On the clock the claim wrote claimedAt with (ctx.now, a fake one in
  // tests): queueMs is the difference of the two. The steps stay wall-clock.
  const startedAt = ctx.now();
  const steps = new StepTimes();
  const [session, env] = await Promise.all([
    ctx.store.getSession(sessionId),
    ctx.store.getEnv(envId),
  ]);
  if (!session || session.envId !== envId || session.state === 'ended') return; // stale
  if (session.state === 'active') return; // done before a crash
  if (!env) return;
  const lab = ctx.labs.get(session.labId);
  const log = ctx.log.child({ sessionId, envId, student: session.student, lab: session.labId });
  if (!lab) {
    await failSession(ctx, sessionId, `lab ${session.labId} is no longer available`);
    return;
  }

  if (env.state === 'claimed') {
    await Promise.all([
      ctx.store.setEnvState(envId, 'preparing', { expected: 'claimed', now: ctx.now() }),
      ctx.store.setSessionState(sessionId, 'preparing'),
    ]);
    ctx.events.emit({
      type: 'env.state',
      envId,
      flavor: env.flavor,
      from: 'claimed',
      to: 'preparing',
      sessionId,
    });
  }
  steps.lap('read');

  let nodes: EnvNode[];
  const scripts = labScripts(lab, ctx.config.labScripts);
  try {
    // The claim's first write to the cluster: it records the session on the
    // Namespace before anything in the env changes, so a Redis lost from here
    // on rebuilds this session instead of handing a touched env out as warm.
    // The VM list is independent of it.
    // Neither touches a guest, so both wait out a host API outage here: an
    // outage is not the env's fault, and every other env would fail the same.
    [, nodes] = await Promise.all([
      steps.time(
        'namespacePatch',
        outlastOutage(
          () =>
            labelState(
              ctx,
              envId,
              'preparing',
              sessionAnnotations({ ...session, claimedAt: session.claimedAt ?? ctx.now() }),
            ),
          CLAIM_OUTAGE_PATIENCE,
        ),
      ),
      steps.time(
        'vmList',
        outlastOutage(
          () =>
            envNodes(
              ctx.cluster,
              envNamespace(ctx.config, envId),
              nodesOfFlavor(ctx.config, env.flavor),
            ),
          CLAIM_OUTAGE_PATIENCE,
        ),
      ),
    ]);
    steps.lap('patchAndList');
    const runCtx = {
      executor: ctx.executor,
      envId,
      nodes,
      env: { LAB_ID: lab.id, LAB_SESSION: sessionId },
    };
    const patience = new SlowGuestPatience(
      SLOW_SETUP_TIMEOUT_FACTOR,
      async (failure, retrySeconds) => {
        log.warn(
          {
            step: failure.file,
            node: failure.node,
            timeoutSeconds: failure.timeoutSeconds,
            retrySeconds,
          },
          'lab setup step timed out: the guest is slow; running it again with more time',
        );
        // Recorded before the event: a front end re-reading the session on
        // the event shows the student that the machines are busy.
        await ctx.store.setSessionFields(sessionId, {
          setupSlow: JSON.stringify({
            step: failure.file,
            node: failure.node,
            timeoutSeconds: failure.timeoutSeconds,
            retrySeconds,
            at: ctx.now(),
          }),
        });
        ctx.events.emit({
          type: 'session.setup-slow',
          sessionId,
          student: session.student,
          labId: lab.id,
          envId,
          step: failure.file,
          node: failure.node,
          timeoutSeconds: failure.timeoutSeconds,
          retrySeconds,
        });
      },
    );
    // The key goes onto every node at once, while the lab's setup runs and
    // then the tools inventory: neither needs the key (they run as labvirt;
    // the key install writes only the student's authorized_keys, which the
    // inventory does not look at), and the student gets in only after all.
    // Waiting for the key installs before the inventory put a guest command
    // more on every claim's path.
    // Unreadable reads as absent: then prepare hashes every tool itself.
    const baseline = ctx.store.envToolsBaseline(envId).catch(() => undefined);
    // What checks will rely on, taken before the student is let in: a check
    // grades only while these tools are unchanged (integrity.ts). Hashes of
    // the files the lab's setup left alone come from the env's warm-up
    // inventory (none after a Redis loss: then everything is hashed); a node
    // no lab step ran on keeps its warm-up record as it is (only labvirt's
    // key install touched it). A slow guest gets a slow setup step's patience.
    const touched = new Set(
      [...scripts.setup, ...scripts.prepare].flatMap((step) =>
        selectNodes(step.node, nodes).map((n) => n.node),
      ),
    );
    let setupDone = false;
    const [setupAndTools, keys] = await Promise.allSettled([
      (async () => {
        await steps.time(
          'labScripts',
          (async () => {
            await runSteps(runCtx, scripts.setup, patience);
            await runSteps(runCtx, scripts.prepare, patience);
          })(),
        );
        setupDone = true;
        return steps.time(
          'tools',
          (async () =>
            recordTools(runCtx, {
              baseline: parseToolsBaseline(await baseline),
              untouched: nodes.map((n) => n.node).filter((n) => !touched.has(n)),
              patience,
              timeoutSeconds: ctx.config.sessions.toolInventoryTimeoutSeconds,
            }))(),
        );
      })(),
      steps.time(
        'keys',
        Promise.all(
          nodes.map((node) =>
            ctx.executor.installStudentKey(
              { envId, node: node.node, ip: node.ip },
              session.publicKey,
            ),
          ),
        ),
      ),
    ]);
    steps.lap('scriptsKeysTools');
    // A failed setup says most about the env (it comes first), then a failed
    // key install, then the inventory.
    if (setupAndTools.status === 'rejected' && !setupDone) throw setupAndTools.reason;
    if (keys.status === 'rejected') throw keys.reason;
    if (setupAndTools.status === 'rejected') throw setupAndTools.reason;
    const tools = setupAndTools.value;
    await ctx.store.setSessionFields(sessionId, { tools: JSON.stringify(tools) });
    steps.lap('recordTools');
  } catch (err) {
    if (err instanceof ScriptFailedError && err.failure.timedOut) {
      // Out of time even with more: the lab's problem on a slow guest, not the env's.
      const { file, node, timeoutSeconds } = err.failure;
      const what =
        file === INVENTORY_STEP ? "labvirt's check of the lab's tools" : "the lab's setup";
      const detail =
        `${what} did not finish in time, even with ${SLOW_SETUP_TIMEOUT_FACTOR}× its time ` +
        `limit: ${file} on ${node} ran out of ${timeoutSeconds} s. The machines are busy: ` +
        `start the lab again in a few minutes`;
      log.warn({ reason: err.message }, 'lab setup timed out twice; ending the session');
      await failSession(ctx, sessionId, detail);
      return;
    }
    const reason =
      err instanceof ScriptFailedError
        ? `lab setup failed: ${err.message}`
        : `env not usable: ${(err as Error).message}`;
    log[ctx.cluster.reachability.levelFor(err)]({ reason }, 'moving student to another env');
    await moveToAnotherEnv(ctx, sessionId, envId, env.flavor, reason);
    return;
  }

  const now = ctx.now();
  const minutes = lab.timeLimitMinutes ?? ctx.config.sessions.defaultMinutes;
  const expiresAt = now + Math.min(minutes, ctx.config.sessions.maxMinutes) * 60_000;
  // The SSH gateway reads where the nodes are from Redis (no cluster access).
  const [, connection] = await Promise.all([
    recordGuests(ctx, sessionId, envId, nodes),
    connectionFor(
      ctx,
      sessionId,
      envId,
      nodes.map((n) => n.node),
    ),
  ]);
  const activated = await ctx.store.activateSession(sessionId, {
    envId,
    readyAt: now,
    expiresAt,
    connection: JSON.stringify(connection),
  });
  if (!activated) return; // ended while we prepared; teardown is already queued
  steps.lap('activate');
  // The student is in from here (the API's long poll answers now): Slack,
  // the web page and the gateway hear it at once, not after the host has
  // been told below (in the 200-burst that write took 1.8 s at p50).
  ctx.events.emit({
    type: 'session.ready',
    sessionId,
    student: session.student,
    labId: session.labId,
    envId,
    claimLatencyMs: now - session.createdAt,
    queueWaitMs: Math.max(0, (session.claimedAt ?? now) - session.createdAt),
  });
  // The env's state, its label and the nodes' VMIs are independent records:
  // written at once.
  await Promise.all([
    ctx.store.setEnvState(envId, 'active', { expected: 'preparing', now: ctx.now() }),
    // The label starts the NodePort sync. The student is in whether or not
    // it is written: failing the job here would only keep them from hearing
    // so (a repeated job finds the session active and ends at once), so a
    // label still missing is left to a reconcile soon (pool.hostRepairDelaySeconds),
    // which writes it with the session's annotations.
    outlastOutage(
      () =>
        labelState(ctx, envId, 'active', {
          [ANNOTATIONS.expiresAt]: new Date(expiresAt).toISOString(),
          [ANNOTATIONS.readyAt]: new Date(now).toISOString(),
        }),
      CLAIM_OUTAGE_PATIENCE,
    ).catch(async (err: unknown) => {
      log[ctx.cluster.reachability.levelFor(err)](
        { err: (err as Error).message },
        'could not label the env active on the host; the student is in, a reconcile labels it soon',
      );
      await requestHostRepair(ctx);
    }),
    // The VMs the student starts on: a node later on another VMI was restarted
    // (watchNodeRestarts). Unknown here, a node's identity is its first VMI seen.
    recordNodeVmis(ctx, {
      sessionId,
      student: session.student,
      envId,
      flavor: env.flavor,
    }).catch((err: unknown) =>
      log.warn({ err: (err as Error).message }, 'could not record the nodes VMIs'),
    ),
  ]);
  steps.lap('markActive');
  // labvirt's connections to the env close once idle (the executor's
  // idleCloseMs), not at once: the NodePort sync forwards to the student's
  // cluster over the control plane's connection right after this, and one
  // closed here would be opened again — a handshake more per claim, about
  // 6 ms of CPU (bench/ssh-cost.bench.ts). Warm envs still hold none
  // (provisioning releases them). The student's own commands go through the
  // gateway's connections.
  ctx.events.emit({
    type: 'env.state',
    envId,
    flavor: env.flavor,
    from: 'preparing',
    to: 'active',
    sessionId,
  });
  log.info(
    {
      expiresAt: new Date(expiresAt).toISOString(),
      claimToReadyMs: now - session.createdAt,
      // From the claim to this job's start: the prepare queue's wait. Never
      // negative: the claim may have been written by another replica's clock.
      queueMs: Math.max(0, startedAt - (session.claimedAt ?? session.createdAt)),
      steps: steps.record,
    },
    'session active',
  );
}

/**
 * How long each step of one prepare took (ms), for the "session active" log
 * line: an operator asking why a claim was slow reads where the time went
 * (waiting for the cluster, the SSH connections, the lab's own scripts)
 * without a profiler. Parallel parts are timed alone (`time`) and the
 * stretch they share as one lap.
 */
class StepTimes {
  readonly record: Record<string, number> = {};
  private last = Date.now();

  /** The time since the previous lap (or the start), under `name`. */
  lap(name: string): void {
    const now = Date.now();
    this.record[name] = now - this.last;
    this.last = now;
  }

  /** How long `work` took from now, under `name` (also when it fails). */
  time<T>(name: string, work: Promise<T>): Promise<T> {
    const from = Date.now();
    return work.finally(() => {
      this.record[name] = Date.now() - from;
    });
  }
}

async function moveToAnotherEnv(
  ctx: PoolContext,
  sessionId: string,
  envId: string,
  flavor: string,
  reason: string,
): Promise<void> {
  const session = await ctx.store.getSession(sessionId);
  if (!session) return;
  ctx.events.emit({ type: 'env.state', envId, flavor, to: 'failed', reason });
  if ((session.moves ?? 0) >= ctx.config.pool.maxSetupMoves) {
    await ctx.queues.addTeardown({ envId, reason });
    await failSession(ctx, sessionId, `the lab could not be set up (${reason})`);
    return;
  }
  const result = await ctx.store.reassignSession(sessionId, envId, ctx.now());
  ctx.events.emit({
    type: 'session.moved',
    sessionId,
    student: session.student,
    fromEnvId: envId,
    reason,
  });
  await ctx.queues.addTeardown({ envId, reason });
  // The prepare job records the new claim on the Namespace (state preparing).
  if (result.newEnvId) await ctx.queues.addPrepare({ sessionId, envId: result.newEnvId });
  await ctx.queues.addMaintenance('replenish');
}

export async function failSession(
  ctx: PoolContext,
  sessionId: string,
  detail: string,
): Promise<void> {
  const ended = await ctx.store.endSession(sessionId, 'failed', ctx.now(), detail);
  if (!ended) return;
  if (ended.envId) await ctx.queues.addTeardown({ envId: ended.envId, reason: 'session failed' });
  ctx.events.emit({
    type: 'session.ended',
    sessionId,
    student: ended.student,
    labId: ended.labId,
    reason: 'failed',
    detail,
  });
}
