import { randomBytes, randomUUID } from 'node:crypto';
import { ENV_STATES, type EnvState } from '../events/index.js';
import { ANNOTATIONS, apiErrorMessage, envNamespace, isApiUnavailable } from '../kube/index.js';
import type { PoolContext } from '../pool/context.js';
import { envNodes, nodesOfFlavor } from '../pool/nodes.js';
import { labelState } from '../pool/provision.js';
import { requestHostRepair } from '../pool/reconcile.js';
import { targetsAt, type FlavorTarget } from '../pool/targets.js';
import type { Lab } from '../labs/index.js';
import type { EnvRecord, SessionRecord } from '../store/index.js';
import { readPublishedPorts, refusedPorts } from '../sync/index.js';
import { generateSessionKeyPair, normalizePublicKey, publicKeyFingerprint } from './keys.js';
import {
  checkPath,
  parseTools,
  recordTools,
  toolsChangedOutcome,
  ToolsUnverifiableError,
  verifyTools,
  type EnvTools,
} from './integrity.js';
import { recordedNodes } from './guests.js';
import { labScripts, runChecks } from './scripts.js';
import {
  LabvirtError,
  type CheckResult,
  type ConnectionDetails,
  type EnvView,
  type FlavorPoolStatus,
  type HintResult,
  type DrainResult,
  type LabSummary,
  type LabvirtService,
  type PoolAdmin,
  type PoolStatus,
  type RegisteredKey,
  type SessionView,
  type StartRequest,
  type StudentService,
} from './types.js';

const STUDENT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const SESSION_PATTERN = /^s-[a-z0-9]{10}$/;
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

export function newSessionId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(10);
  return 's-' + Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

/** labvirt's sessions as front ends see them: the implementation of {@link LabvirtService}. */
export class SessionService implements LabvirtService, StudentService, PoolAdmin {
  constructor(
    private readonly ctx: PoolContext,
    private readonly probes: { redis: () => Promise<void>; cluster: () => Promise<void> },
  ) {}

  async start(request: StartRequest): Promise<SessionView> {
    const { ctx } = this;
    if (!STUDENT_PATTERN.test(request.student ?? '')) {
      throw new LabvirtError('INVALID_REQUEST', 'student must be 1-128 letters, digits or ._@+-');
    }
    if (request.requestId !== undefined && !REQUEST_ID_PATTERN.test(request.requestId)) {
      throw new LabvirtError('INVALID_REQUEST', 'requestId must be 1-128 letters, digits or ._-');
    }
    const lab = ctx.labs.get(request.labId);
    if (!lab) {
      throw new LabvirtError('UNKNOWN_LAB', `no lab named "${request.labId}"`, {
        available: [...ctx.labs.keys()].sort(),
      });
    }
    if (!(lab.flavor in ctx.config.flavors)) {
      throw new LabvirtError(
        'UNKNOWN_FLAVOR',
        `lab ${lab.id} needs flavor ${lab.flavor}, which this installation does not offer`,
      );
    }
    let publicKey: string;
    let privateKey: string | undefined;
    const sessionId = newSessionId();
    const registered = request.publicKey
      ? undefined
      : await ctx.store.studentPublicKey(request.student);
    if (request.publicKey) {
      publicKey = normalizePublicKey(request.publicKey);
    } else if (registered) {
      publicKey = registered;
    } else {
      const pair = generateSessionKeyPair(sessionId);
      publicKey = pair.publicKey;
      privateKey = pair.privateKey;
    }
    const result = await ctx.store.requestSession({
      sessionId,
      student: request.student,
      labId: lab.id,
      flavor: lab.flavor,
      requestId: request.requestId ?? sessionId,
      publicKey,
      maxPerStudent: ctx.config.sessions.maxPerStudent,
      now: ctx.now(),
    });
    if (result.outcome === 'claimed' || result.outcome === 'waiting') {
      await ctx.store.rememberSession(request.student, sessionId, result.session.createdAt);
    }
    switch (result.outcome) {
      case 'existing':
        return this.view(result.session);
      case 'taken':
        throw new LabvirtError(
          'REQUEST_ID_IN_USE',
          'this request id was already used by another student: send a new one',
          { field: 'requestId' },
        );
      case 'limit':
        throw new LabvirtError(
          'LIMIT_REACHED',
          `you already have ${ctx.config.sessions.maxPerStudent} session(s) running: stop one first`,
          { sessions: result.sessions.map((s) => s.id) },
        );
      case 'claimed': {
        const envId = result.session.envId!;
        ctx.events.emit({
          type: 'env.state',
          envId,
          flavor: lab.flavor,
          from: 'warm',
          to: 'claimed',
          sessionId,
        });
        // The prepare job writes the claim onto the env's Namespace, once.
        const [view] = await Promise.all([
          this.view(result.session),
          ctx.queues.addPrepare({ sessionId, envId }),
          ctx.queues.addMaintenance('replenish'),
        ]);
        return { ...view, privateKey };
      }
      case 'waiting': {
        const view = await this.view(result.session);
        ctx.events.emit({
          type: 'session.queued',
          sessionId,
          student: request.student,
          labId: lab.id,
          flavor: lab.flavor,
          position: view.queue?.position ?? 0,
          estimateSeconds: view.queue?.estimateSeconds ?? 0,
        });
        await ctx.queues.addMaintenance('replenish');
        return { ...view, privateKey };
      }
    }
  }

  async stop(sessionId: string, actor?: string): Promise<SessionView> {
    await this.owned(sessionId, actor);
    const ended = await this.ctx.store.endSession(sessionId, 'released', this.ctx.now());
    if (ended) {
      if (ended.envId)
        await this.ctx.queues.addTeardown({ envId: ended.envId, reason: 'released' });
      this.ctx.events.emit({
        type: 'session.ended',
        sessionId,
        student: ended.student,
        labId: ended.labId,
        reason: 'released',
      });
      await this.ctx.queues.addMaintenance('replenish');
    }
    return this.view((await this.ctx.store.getSession(sessionId))!);
  }

  async extend(sessionId: string, actor?: string): Promise<SessionView> {
    const { ctx } = this;
    const session = await this.owned(sessionId, actor);
    if (session.state !== 'active' || !session.expiresAt || !session.readyAt) {
      throw new LabvirtError('SESSION_NOT_ACTIVE', 'only an active session can be extended');
    }
    const max = session.readyAt + ctx.config.sessions.maxMinutes * 60_000;
    const next = Math.min(max, session.expiresAt + ctx.config.sessions.extendMinutes * 60_000);
    if (next <= session.expiresAt) {
      throw new LabvirtError(
        'MAX_EXTENSION',
        `sessions last at most ${ctx.config.sessions.maxMinutes} minutes`,
        {
          expiresAt: new Date(session.expiresAt).toISOString(),
        },
      );
    }
    await ctx.store.setSessionFields(sessionId, { expiresAt: next, warnedAt: 0 });
    if (session.envId) {
      // Redis holds the new expiry already; the host's copy (what a Redis
      // loss rebuilds the session from) follows with a reconcile soon.
      await labelState(ctx, session.envId, 'active', {
        [ANNOTATIONS.expiresAt]: new Date(next).toISOString(),
      }).catch(() => requestHostRepair(ctx));
    }
    ctx.events.emit({
      type: 'session.extended',
      sessionId,
      student: session.student,
      expiresAt: new Date(next).toISOString(),
    });
    return this.view((await ctx.store.getSession(sessionId))!);
  }

  async status(sessionId: string, actor?: string): Promise<SessionView> {
    const view = await this.view(await this.owned(sessionId, actor));
    if (view.state === 'active' && view.envId) view.ports = await this.ports(view.envId);
    return view;
  }

  /**
   * What the NodePort sync publishes for the env (read from the host, so any
   * replica answers). The mirrors' list and the Namespace (for the refusals)
   * are read at once: the answer that tells a waiting student their env is
   * ready waits on both.
   */
  private async ports(envId: string): Promise<SessionView['ports']> {
    const { cluster, config } = this.ctx;
    const name = envNamespace(config, envId);
    const published = readPublishedPorts(cluster, config, name);
    // Heard below, or dropped with the Namespace's own failure.
    published.catch(() => undefined);
    // The session's status is Redis's: a host API server that cannot answer
    // now leaves the ports out of it, it does not fail the whole answer.
    try {
      const namespace = await cluster.getNamespace(name);
      if (!namespace) return undefined;
      return { published: await published, refused: refusedPorts(namespace) };
    } catch (err) {
      this.ctx.log[cluster.reachability.levelFor(err)](
        { envId, err: apiErrorMessage(err) },
        'could not read published ports',
      );
      return undefined;
    }
  }

  async list(filter: { student?: string; includeEnded?: boolean } = {}): Promise<SessionView[]> {
    const sessions = await this.ctx.store.listSessions({ student: filter.student });
    const shown = filter.includeEnded ? sessions : sessions.filter((s) => s.state !== 'ended');
    return Promise.all(shown.map((s) => this.view(s)));
  }

  /** Runs the lab's checks in the session's env (its nodes looked up now). */
  private async runLabChecks(session: SessionRecord, lab: Lab) {
    const { ctx } = this;
    const envId = session.envId!;
    const env = await ctx.store.getEnv(envId);
    const expected = nodesOfFlavor(ctx.config, env?.flavor ?? lab.flavor);
    const nodes = await envNodes(ctx.cluster, envNamespace(ctx.config, envId), expected).catch(
      (err: unknown) => {
        // The host API server out of reach says nothing of the env: its
        // nodes are where the gateway's record says (a check during a host
        // upgrade grades as at any other time).
        if (isApiUnavailable(err) && session.guests) {
          const recorded = recordedNodes(session.guests);
          if (expected.every((n) => recorded.some((r) => r.node === n))) return recorded;
        }
        throw new LabvirtError(
          'UNAVAILABLE',
          `your env is not reachable right now: ${(err as Error).message}`,
        );
      },
    );
    const runCtx = { executor: ctx.executor, envId, nodes };
    const integrity = await this.checkTools(session, runCtx);
    if (!integrity.ok) return [toolsChangedOutcome(integrity.problems)];
    const path = checkPath(integrity.tools, nodes);
    return runChecks(
      {
        ...runCtx,
        env: { LAB_ID: lab.id, LAB_SESSION: session.id, ...(path ? { PATH: path } : {}) },
      },
      labScripts(lab, ctx.config.labScripts).checks,
    );
  }

  /**
   * Whether the env's tools are as recorded when the student was let in
   * (integrity.ts). Sessions prepared before tools were recorded, or rebuilt
   * after a Redis loss, record them at their first check.
   */
  private async checkTools(
    session: SessionRecord,
    runCtx: Parameters<typeof verifyTools>[0],
  ): Promise<{ ok: true; tools: EnvTools } | { ok: false; problems: string[] }> {
    const { ctx } = this;
    try {
      const recorded = parseTools(session.tools);
      if (recorded) {
        const problems = await verifyTools(runCtx, recorded);
        if (problems.length === 0) return { ok: true, tools: recorded };
        ctx.log.warn(
          { sessionId: session.id, envId: runCtx.envId, problems },
          'lab tools changed; not grading',
        );
        return { ok: false, problems };
      }
      const tools = await recordTools(runCtx);
      await ctx.store.setSessionFields(session.id, { tools: JSON.stringify(tools) });
      return { ok: true, tools };
    } catch (err) {
      if (err instanceof ToolsUnverifiableError) return { ok: false, problems: [err.message] };
      throw new LabvirtError(
        'UNAVAILABLE',
        `your env is not reachable right now: ${(err as Error).message}`,
      );
    }
  }

  async check(sessionId: string, actor?: string): Promise<CheckResult> {
    const { ctx } = this;
    const session = await this.owned(sessionId, actor);
    if (session.state !== 'active' || !session.envId) {
      throw new LabvirtError('SESSION_NOT_ACTIVE', 'the session is not active yet (or has ended)');
    }
    const lab = ctx.labs.get(session.labId);
    if (!lab) throw new LabvirtError('UNKNOWN_LAB', `lab ${session.labId} is no longer available`);
    // One check per session at a time: a second would race the first in the
    // same VMs and double the load a student can cause. The mark lapses after
    // the longest a check can run, should this process die mid-check.
    const lockToken = randomUUID();
    const lockMs =
      labScripts(lab, ctx.config.labScripts).checks.reduce(
        (ms, c) => ms + c.timeoutSeconds * 1000,
        0,
      ) + 30_000;
    if (!(await ctx.store.acquireCheckLock(sessionId, lockToken, lockMs))) {
      throw new LabvirtError(
        'CHECK_RUNNING',
        'a check of this session is already running: wait for its result',
        { retryAfterSeconds: 5 },
      );
    }
    let checks: Awaited<ReturnType<typeof runChecks>>;
    try {
      checks = await this.runLabChecks(session, lab);
    } finally {
      await ctx.store.releaseCheckLock(sessionId, lockToken).catch(() => undefined);
    }
    const score = checks.reduce((sum, c) => sum + c.points, 0);
    const maxScore = labScripts(lab, ctx.config.labScripts).checks.reduce(
      (s, c) => s + c.points,
      0,
    );
    const passed = checks.every((c) => c.passed);
    if (passed && session.solvedAt === undefined) {
      await ctx.store.setSessionFields(sessionId, { solvedAt: ctx.now(), score, maxScore });
    }
    ctx.events.emit({
      type: 'check.completed',
      sessionId,
      student: session.student,
      labId: lab.id,
      passed,
      score,
      maxScore,
    });
    return { sessionId, passed, score, maxScore, checks };
  }

  async hint(sessionId: string, actor?: string): Promise<HintResult> {
    const { ctx } = this;
    const session = await this.owned(sessionId, actor);
    if (session.state === 'ended')
      throw new LabvirtError('SESSION_NOT_ACTIVE', 'the session has ended');
    const lab = ctx.labs.get(session.labId);
    if (!lab) throw new LabvirtError('UNKNOWN_LAB', `lab ${session.labId} is no longer available`);
    const index = await ctx.store.takeHint(sessionId, lab.hints.length);
    if (index === undefined) {
      throw new LabvirtError('NO_MORE_HINTS', `you have seen all ${lab.hints.length} hints`);
    }
    if (session.envId) {
      await labelState(ctx, session.envId, session.state === 'active' ? 'active' : 'preparing', {
        [ANNOTATIONS.hintsUsed]: String(index),
      }).catch(() => undefined);
    }
    ctx.events.emit({
      type: 'hint.revealed',
      sessionId,
      student: session.student,
      labId: lab.id,
      index,
      total: lab.hints.length,
    });
    return { sessionId, index, total: lab.hints.length, text: lab.hints[index - 1]! };
  }

  async poolStatus(): Promise<PoolStatus> {
    const { ctx } = this;
    const overrides = await ctx.store.warmTargetOverrides();
    const flavors: FlavorPoolStatus[] = [];
    for (const target of targetsAt(ctx.config, new Date(ctx.now()), overrides)) {
      flavors.push(await this.flavorStatus(target));
    }
    return { flavors };
  }

  private async flavorStatus(target: FlavorTarget): Promise<FlavorPoolStatus> {
    const { ctx } = this;
    const raw = await ctx.store.countByState(target.flavor);
    const counts = Object.fromEntries(ENV_STATES.map((s) => [s, raw[s] ?? 0])) as Record<
      EnvState,
      number
    >;
    const blocked = await ctx.store.capacityBlocked(target.flavor);
    const status: FlavorPoolStatus = {
      flavor: target.flavor,
      counts,
      minWarm: ctx.config.flavors[target.flavor]!.minWarm,
      targetWarm: target.minWarm,
      maxTotal: target.maxTotal,
      waiting: await ctx.store.waitingCount(target.flavor),
      capacityBlocked: blocked !== undefined,
      capacityReason: blocked,
      scheduledTargets: target.scheduled,
    };
    if (target.override !== undefined) status.targetOverride = target.override;
    return status;
  }

  private async statusOfFlavor(flavor: string): Promise<FlavorPoolStatus> {
    const overrides = await this.ctx.store.warmTargetOverrides();
    const target = targetsAt(this.ctx.config, new Date(this.ctx.now()), overrides).find(
      (t) => t.flavor === flavor,
    )!;
    return this.flavorStatus(target);
  }

  private knownFlavor(flavor: string) {
    const f = Object.hasOwn(this.ctx.config.flavors, flavor)
      ? this.ctx.config.flavors[flavor]
      : undefined;
    if (!f) {
      throw new LabvirtError('UNKNOWN_FLAVOR', `no flavor named ${JSON.stringify(flavor)}`, {
        flavors: Object.keys(this.ctx.config.flavors),
      });
    }
    return f;
  }

  async setWarmTarget(flavor: string, target: number): Promise<FlavorPoolStatus> {
    const f = this.knownFlavor(flavor);
    if (!Number.isInteger(target) || target < 0 || target > f.maxTotal) {
      throw new LabvirtError(
        'INVALID_REQUEST',
        `the warm target of ${flavor} must be a whole number from 0 to its maxTotal (${f.maxTotal})`,
        { field: 'targetWarm', maxTotal: f.maxTotal },
      );
    }
    await this.ctx.store.setWarmTargetOverride(flavor, target);
    await this.ctx.queues.addMaintenance('replenish');
    return this.statusOfFlavor(flavor);
  }

  async clearWarmTarget(flavor: string): Promise<FlavorPoolStatus> {
    this.knownFlavor(flavor);
    await this.ctx.store.clearWarmTargetOverride(flavor);
    await this.ctx.queues.addMaintenance('replenish');
    return this.statusOfFlavor(flavor);
  }

  async drainFlavor(flavor: string): Promise<DrainResult> {
    this.knownFlavor(flavor);
    const { ctx } = this;
    // Target first: a replenish running meanwhile must not refill what goes away.
    await ctx.store.setWarmTargetOverride(flavor, 0);
    const tearingDown: string[] = [];
    for (const envId of await ctx.store.warmEnvIds(flavor)) {
      // Compare-and-set from warm: an env a student claims in the meantime is not touched.
      if (!(await ctx.store.setEnvState(envId, 'releasing', { expected: 'warm', now: ctx.now() })))
        continue;
      ctx.events.emit({
        type: 'env.state',
        envId,
        flavor,
        from: 'warm',
        to: 'releasing',
        reason: 'drained',
      });
      await ctx.queues.addTeardown({ envId, reason: 'drained' });
      tearingDown.push(envId);
    }
    const counts = await ctx.store.countByState(flavor);
    return {
      flavor,
      tearingDown,
      inUse: (counts.claimed ?? 0) + (counts.preparing ?? 0) + (counts.active ?? 0),
      inFlight: (counts.provisioning ?? 0) + (counts.booting ?? 0),
    };
  }

  async deleteFailedEnv(envId: string): Promise<EnvView> {
    const env = await this.ctx.store.getEnv(envId);
    if (!env) throw new LabvirtError('ENV_NOT_FOUND', `no env named ${JSON.stringify(envId)}`);
    if (env.state !== 'failed') {
      throw new LabvirtError(
        'ENV_NOT_FAILED',
        `env ${envId} is ${env.state}: only failed envs are deleted this way`,
        { state: env.state },
      );
    }
    await this.ctx.queues.retryTeardown({ envId, reason: 'deleted by an operator' });
    const [view] = await this.viewsOf([env]);
    return view!;
  }

  async listEnvs(filter: { flavor?: string; state?: EnvState } = {}): Promise<EnvView[]> {
    return this.viewsOf(await this.ctx.store.listEnvs(filter));
  }

  private viewsOf(envs: EnvRecord[]): Promise<EnvView[]> {
    return Promise.all(
      envs.map(async (env) => {
        const session = env.sessionId ? await this.ctx.store.getSession(env.sessionId) : undefined;
        return {
          id: env.envId,
          namespace: envNamespace(this.ctx.config, env.envId),
          flavor: env.flavor,
          state: env.state,
          createdAt: new Date(env.createdAt).toISOString(),
          sessionId: env.sessionId,
          student: session?.student,
          labId: session?.labId,
          expiresAt: session?.expiresAt ? new Date(session.expiresAt).toISOString() : undefined,
        };
      }),
    );
  }

  /** The catalogue, built once: the labs are fixed for a labvirt's life. */
  private labSummaries?: LabSummary[];

  async listLabs(): Promise<LabSummary[]> {
    // Built once, not per call: a class's 200 simultaneous Slack starts each
    // check their lab against it, and the locale sort was a tenth of
    // labvirt's CPU on the way to their acknowledgements.
    this.labSummaries ??= [...this.ctx.labs.values()]
      .map((lab) => ({
        id: lab.id,
        title: lab.title,
        flavor: lab.flavor,
        difficulty: lab.difficulty,
        timeLimitMinutes: lab.timeLimitMinutes,
      }))
      .sort((a, b) => a.id.localeCompare(b.id));
    return [...this.labSummaries];
  }

  async registerKey(student: string, publicKey: string): Promise<RegisteredKey> {
    if (!STUDENT_PATTERN.test(student)) {
      throw new LabvirtError('INVALID_REQUEST', 'student must be 1-128 letters, digits or ._@+-');
    }
    const normalized = normalizePublicKey(publicKey);
    await this.ctx.store.setStudentPublicKey(student, normalized);
    return { publicKey: normalized, fingerprint: publicKeyFingerprint(normalized) };
  }

  async registeredKey(student: string): Promise<RegisteredKey | undefined> {
    const publicKey = await this.ctx.store.studentPublicKey(student);
    return publicKey ? { publicKey, fingerprint: publicKeyFingerprint(publicKey) } : undefined;
  }

  async recentSessions(student: string, limit = 5): Promise<SessionView[]> {
    const sessions = await this.ctx.store.recentSessions(student, limit);
    return Promise.all(sessions.map((s) => this.view(s)));
  }

  async health() {
    const checks: Record<string, { ok: boolean; detail?: string }> = {};
    for (const [name, probe] of Object.entries(this.probes)) {
      try {
        await probe();
        checks[name] = { ok: true };
      } catch (err) {
        checks[name] = { ok: false, detail: (err as Error).message };
      }
    }
    return { ok: Object.values(checks).every((c) => c.ok), checks };
  }

  /** The session, if it exists and `actor` (when given) owns it. */
  private async owned(sessionId: string, actor?: string): Promise<SessionRecord> {
    if (!SESSION_PATTERN.test(sessionId)) {
      throw new LabvirtError('SESSION_NOT_FOUND', `no session "${sessionId}"`);
    }
    const session = await this.ctx.store.getSession(sessionId);
    if (!session) throw new LabvirtError('SESSION_NOT_FOUND', `no session "${sessionId}"`);
    if (actor !== undefined && session.student !== actor) {
      throw new LabvirtError('NOT_YOUR_SESSION', 'this session belongs to another student');
    }
    return session;
  }

  private async view(session: SessionRecord): Promise<SessionView> {
    const lab = this.ctx.labs.get(session.labId);
    const view: SessionView = {
      id: session.id,
      student: session.student,
      labId: session.labId,
      labTitle: lab?.title ?? session.labId,
      labDescription: lab?.description,
      flavor: session.flavor,
      state: session.state,
      envId: session.envId,
      createdAt: new Date(session.createdAt).toISOString(),
      readyAt: session.readyAt ? new Date(session.readyAt).toISOString() : undefined,
      expiresAt: session.expiresAt ? new Date(session.expiresAt).toISOString() : undefined,
      maxExpiresAt: session.readyAt
        ? new Date(session.readyAt + this.ctx.config.sessions.maxMinutes * 60_000).toISOString()
        : undefined,
      hintsUsed: session.hintsUsed,
      hintsTotal: lab?.hints.length ?? 0,
      endedReason: session.endedReason,
      endedAt: session.endedAt ? new Date(session.endedAt).toISOString() : undefined,
      endedDetail: session.endedDetail,
      solvedAt: session.solvedAt ? new Date(session.solvedAt).toISOString() : undefined,
      score: session.score,
      maxScore: session.maxScore,
      connection:
        session.state === 'active' && session.connection
          ? (JSON.parse(session.connection) as ConnectionDetails)
          : undefined,
      nodeRestarts: session.nodeRestarts?.map((r) => ({
        node: r.node,
        at: new Date(r.at).toISOString(),
      })),
    };
    if (session.state === 'waiting') {
      view.queue = await this.ctx.store.queuePosition(session.id);
    }
    if ((session.state === 'claimed' || session.state === 'preparing') && session.setupSlow) {
      view.slow = slowNote(session.setupSlow);
    }
    return view;
  }
}

/** What a student reads while setup runs again on busy machines. */
export const SETUP_SLOW_MESSAGE = 'the machines are busy: setup is taking longer than usual';

/** The view's `slow` note from the stored `setupSlow` (undefined when unreadable). */
function slowNote(stored: string): SessionView['slow'] {
  try {
    const s = JSON.parse(stored) as {
      step: string;
      node: string;
      retrySeconds: number;
      at: number;
    };
    return {
      message: SETUP_SLOW_MESSAGE,
      since: new Date(s.at).toISOString(),
      step: s.step,
      node: s.node,
      retrySeconds: s.retrySeconds,
    };
  } catch {
    return undefined;
  }
}
