import { ENV_ID_PATTERN, envNamespace } from '../kube/index.js';
import type { PoolContext } from '../pool/context.js';
import { nodesOfFlavor, type NodeName } from '../pool/nodes.js';
import { recordGuests } from './guests.js';

/**
 * Follows the shared VMI watch and tells a student when a node of their
 * active session came back as a new VM (a host drain, a crash, a restart):
 * its containerDisk is fresh, so the lab's setup and the student's work on
 * that node are gone. The session is marked (`nodeRestarts`) and a
 * `session.node-restarted` event goes out once per replacement; the session
 * goes on (nothing is moved for the student, who may stop and start again):
 * once the new VM is up, the student's key is put back on it and its new
 * address recorded for the gateway (`session.node-reachable`), so they can
 * still log in there; the lab's setup is not run again.
 *
 * Level-triggered: every change in an env's namespace compares the VMIs
 * there with the uids recorded for the session (and records, for the
 * gateway, the nodes of a session that has no record of them), so a missed
 * event is made up by the next one or by the watch's relist, and the
 * comparison at start finds restarts that happened while no labvirt was
 * running. Returns the function that stops following.
 */
export function watchNodeRestarts(ctx: PoolContext): () => void {
  const watch = ctx.cluster.vmis();
  const prefix = ctx.config.namespacePrefix;
  const log = ctx.log.child({ component: 'node-restarts' });
  let stopped = false;
  // One look per env at a time; a change seen during a look asks for one more.
  const looking = new Map<string, { again: boolean }>();

  const look = (envId: string): void => {
    const current = looking.get(envId);
    if (current) {
      current.again = true;
      return;
    }
    const state = { again: true };
    looking.set(envId, state);
    void (async () => {
      try {
        while (state.again && !stopped) {
          state.again = false;
          await checkEnvForRestarts(ctx, envId);
        }
      } catch (err) {
        log[ctx.cluster.reachability.levelFor(err)](
          { envId, err: (err as Error).message },
          'could not compare the env VMs',
        );
      } finally {
        looking.delete(envId);
      }
    })();
  };

  const off = watch.onChange((namespace) => {
    if (!namespace.startsWith(prefix)) return;
    const envId = namespace.slice(prefix.length);
    if (ENV_ID_PATTERN.test(envId)) look(envId);
  });
  void watch
    .synced()
    .then(async () => {
      for (const session of await ctx.store.sessionsExpiringBefore(Number.MAX_SAFE_INTEGER)) {
        if (!stopped && session.state === 'active' && session.envId) look(session.envId);
      }
    })
    .catch((err: unknown) =>
      log.warn({ err: (err as Error).message }, 'could not compare active sessions at start'),
    );
  return () => {
    stopped = true;
    off();
  };
}

/** Compares the env's VMIs with what its active session recorded (nothing when it has none). */
export async function checkEnvForRestarts(ctx: PoolContext, envId: string): Promise<void> {
  const env = await ctx.store.getEnv(envId);
  if (!env?.sessionId) return;
  const session = await ctx.store.getSession(env.sessionId);
  if (!session || session.state !== 'active' || session.envId !== envId) return;
  await recordNodeVmis(ctx, {
    sessionId: session.id,
    student: session.student,
    envId,
    flavor: env.flavor,
  });
  await recordMissingGuests(ctx, session, envId, env.flavor);
}

/**
 * A session whose nodes are not recorded for the gateway (activated by a
 * labvirt from before the record, or rebuilt from the cluster after a Redis
 * loss): puts the session's keys on each running node again (the gateway's
 * among them; idempotent), then records where it is, so a gateway without
 * cluster access can take the student there. A node not running yet is
 * recorded at a later look.
 */
async function recordMissingGuests(
  ctx: PoolContext,
  session: { id: string; student: string; publicKey: string; guests?: Record<string, unknown> },
  envId: string,
  flavor: string,
): Promise<void> {
  const missing = nodesOfFlavor(ctx.config, flavor).filter((node) => !session.guests?.[node]);
  if (missing.length === 0) return;
  const namespace = envNamespace(ctx.config, envId);
  const watch = ctx.cluster.vmis();
  const running = missing.flatMap((node) => {
    const vmi = watch.get(namespace, node);
    return vmi?.uid && vmi.phase === 'Running' ? [{ node, uid: vmi.uid }] : [];
  });
  if (running.length === 0) return;
  // The launcher pods' addresses, never what the guests report.
  const addresses = await ctx.cluster.launcherAddresses(namespace);
  const nodes = running.flatMap(({ node, uid }) => {
    const ip = addresses.get(uid);
    return ip ? [{ node, ip }] : [];
  });
  await Promise.all(
    nodes.map((n) => ctx.executor.installStudentKey({ envId, ...n }, session.publicKey)),
  );
  await recordGuests(ctx, session.id, envId, nodes);
  for (const { node } of nodes) {
    ctx.events.emit({
      type: 'session.node-reachable',
      sessionId: session.id,
      student: session.student,
      envId,
      node,
    });
  }
}

/**
 * Records the VMI each node of an active session runs now, as the shared
 * watch sees it: at activation this is the nodes' identity; later, a node on
 * a VMI not seen before is reported as restarted. A node without a VMI (gone,
 * not back yet) is looked at again when its new VMI appears.
 */
export async function recordNodeVmis(
  ctx: PoolContext,
  session: { sessionId: string; student: string; envId: string; flavor: string },
): Promise<void> {
  const { sessionId, student, envId, flavor } = session;
  const namespace = envNamespace(ctx.config, envId);
  const watch = ctx.cluster.vmis();
  // All nodes in one script: one round trip, and each node's record is still its own.
  const nodes = nodesOfFlavor(ctx.config, flavor).flatMap((node) => {
    const uid = watch.get(namespace, node)?.uid;
    return uid ? [{ node, uid }] : [];
  });
  const at = ctx.now();
  const restarted = await ctx.store.recordNodeVmis(sessionId, { envId, at, nodes });
  for (const { node, uid } of nodes.filter((n) => restarted.includes(n.node))) {
    const log = ctx.log.child({ sessionId, envId, student, node });
    log.warn('node restarted during the session: its disk is fresh');
    // The replica that recorded the restart gives the student their way in
    // back (the key went with the old disk); the session waits for nobody.
    void restoreStudentKey(ctx, { sessionId, envId, node, uid }).catch((err: unknown) =>
      log.warn({ err: (err as Error).message }, 'could not put the student key back'),
    );
    ctx.events.emit({
      type: 'session.node-restarted',
      sessionId,
      student,
      envId,
      node,
      at: new Date(at).toISOString(),
    });
  }
}

/** How long one wait on the VMI watch lasts before the VMI is looked at again. */
const WATCH_WAIT_MS = 5_000;

/**
 * Waits for the replacement VMI `uid` to run, then for its guest to be ready,
 * and appends the session's key to the student's authorized_keys there, as
 * the claim did on the old disk. Gives up when the session ended, or when the
 * node was replaced again (that replacement's own report does it).
 */
async function restoreStudentKey(
  ctx: PoolContext,
  target: { sessionId: string; envId: string; node: NodeName; uid: string },
): Promise<void> {
  const { sessionId, envId, node, uid } = target;
  const namespace = envNamespace(ctx.config, envId);
  const watch = ctx.cluster.vmis();
  const deadline = Date.now() + ctx.config.pool.provisionDeadlineSeconds * 1000;
  let ip: string | undefined;
  for (;;) {
    const changed = watch.nextChange(namespace, WATCH_WAIT_MS);
    const vmi = watch.get(namespace, node);
    if (vmi && vmi.uid !== uid) return;
    if (vmi?.phase === 'Running') {
      // The address of the new VMI's launcher pod, never what its guest reports.
      ip = (await ctx.cluster.launcherAddresses(namespace)).get(uid);
      if (ip) break;
    }
    if (Date.now() > deadline) throw new Error(`${node} did not come back running in time`);
    await changed;
  }
  const guest = { envId, node, ip };
  await ctx.executor.waitReady(guest, { timeoutMs: Math.max(1000, deadline - Date.now()) });
  const session = await ctx.store.getSession(sessionId);
  if (!session || session.state !== 'active' || session.envId !== envId) return;
  await ctx.executor.installStudentKey(guest, session.publicKey);
  // The gateway finds the node at its new address (and hears of it at once).
  await recordGuests(ctx, sessionId, envId, [{ node, ip }]);
  ctx.events.emit({
    type: 'session.node-reachable',
    sessionId,
    student: session.student,
    envId,
    node,
  });
}
