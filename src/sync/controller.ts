import type { V1Service } from '@kubernetes/client-node';
import type { Config } from '../config/index.js';
import type { EventBus } from '../events/index.js';
import type { HostCluster, NamespaceView } from '../kube/index.js';
import {
  ANNOTATIONS,
  LABELS,
  readEnvSecrets,
  apiErrorMessage,
  syncClientCertificate,
  validFor,
} from '../kube/index.js';
import type { Logger } from '../log/index.js';
import type { Executor } from '../ssh/index.js';
import { HostMirrors, type HostState } from './host.js';
import { SYNC_ANNOTATIONS } from './names.js';
import {
  planMirrors,
  refusalKey,
  refusalMessage,
  studentPorts,
  type RefusedPort,
  type SyncLimits,
} from './plan.js';
import { StudentClusterWatch } from './student.js';

export interface NodePortSyncOptions {
  config: Config;
  cluster: HostCluster;
  executor: Executor;
  events: EventBus;
  logger: Logger;
}

interface EnvSync {
  envId: string;
  namespace: string;
  sessionId?: string;
  student?: string;
  watch?: StudentClusterWatch;
  /** The student's Services as last listed or watched; undefined until the first list. */
  services?: readonly V1Service[];
  running?: Promise<void>;
  dirty: boolean;
  stopped: boolean;
  /** Refusals reported already (keys), as the Namespace annotation remembers them. */
  reported: Set<string>;
  /** The env's mirrors on the host as last read or written (undefined: read them). */
  host?: HostState;
  /** What was last published (to emit `sync.published` on change only). */
  publishedSignature?: string;
  /** What the last reconcile left live on the host (published once the env is caught up). */
  liveSignature?: string;
  apiDown: boolean;
  /** When the oldest student change not yet reconciled arrived (epoch ms; for the debug trace). */
  changedAt?: number;
  hostFailures: number;
  retry?: NodeJS.Timeout;
}

/**
 * The NodePort sync: for every env whose Namespace says `active`, a
 * level-triggered reconciler that moves the env's host mirrors toward the
 * student cluster's NodePort and LoadBalancer Services; for every other
 * env, no mirrors. Host objects (labelled mirrors, a Namespace annotation
 * for what was reported) are its memory, so a restart — or a second
 * replica — converges on the same objects instead of duplicating them.
 */
export class NodePortSync {
  private readonly envs = new Map<string, EnvSync>();
  /** Non-active envs whose mirrors were removed (so they are not listed on every update). */
  private readonly clean = new Set<string>();
  private readonly mirrors: HostMirrors;
  private readonly limits: SyncLimits;
  private readonly log: Logger;
  /** Stops following the host's shared Namespace watch. */
  private unfollow?: () => void;
  private stopped = false;

  constructor(private readonly opts: NodePortSyncOptions) {
    this.mirrors = new HostMirrors(opts.cluster, opts.config);
    this.limits = {
      maxPortsPerEnv: opts.config.sync.maxPortsPerEnv,
      protocols: opts.config.sync.protocols,
      studentPortRange: opts.config.sync.studentPortRange,
    };
    this.log = opts.logger.child({ component: 'sync' });
  }

  private get retryInitialMs() {
    return this.opts.config.sync.retryInitialSeconds * 1000;
  }
  private get retryMaxMs() {
    return this.opts.config.sync.retryMaxSeconds * 1000;
  }

  /** Student clusters being watched now. */
  get watchedEnvs(): number {
    return this.envs.size;
  }

  /** Watched student clusters whose Services have been listed and whose API server answers. */
  get listedEnvs(): number {
    let listed = 0;
    for (const e of this.envs.values()) if (e.services && !e.apiDown) listed++;
    return listed;
  }

  /**
   * Follows the host's env Namespaces through the cluster's one shared
   * Namespace watch (src/kube/watch.ts: it restarts itself after errors and
   * relists as a watchdog, waking every Namespace that changed or went).
   */
  start(): void {
    if (this.unfollow || this.stopped) return;
    const watch = this.opts.cluster.namespaces();
    this.unfollow = watch.onChange((name) => this.namespaceChanged(name));
    // What the watch held before this sync followed it (another component may have started it).
    void watch.synced().then(() => {
      if (this.stopped) return;
      for (const name of watch.namespaces()) this.namespaceChanged(name);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unfollow?.();
    this.unfollow = undefined;
    // Mirrors stay: they belong to sessions that are still active; the next labvirt picks them up.
    await Promise.all([...this.envs.values()].map((e) => this.halt(e)));
    this.envs.clear();
  }

  private namespaceChanged(name: string): void {
    if (this.stopped) return;
    const ns = this.opts.cluster.namespaces().get(name, name);
    if (ns) return this.namespaceSeen(ns);
    // Gone: its env's watch stops (nothing of it is left to clean up).
    for (const e of this.envs.values()) if (e.namespace === name) void this.endEnv(e, false);
  }

  private namespaceSeen(ns: NamespaceView): void {
    const envId = ns.labels[LABELS.env];
    const namespace = ns.name;
    if (!envId || !namespace) return;
    const active = ns.labels[LABELS.state] === 'active' && !ns.deleting;
    const e = this.envs.get(envId);
    if (active && !e) {
      this.clean.delete(envId);
      this.beginEnv(envId, namespace, ns);
    } else if (active && e) {
      e.sessionId = ns.annotations[ANNOTATIONS.session];
      e.student = ns.annotations[ANNOTATIONS.student];
    } else if (e) {
      void this.endEnv(e, !ns.deleting);
    } else if (!this.clean.has(envId) && !ns.deleting) {
      // Level-triggered: an env that is not active has no mirrors, whatever happened before.
      this.clean.add(envId);
      this.mirrors.removeAll(namespace).then(
        (n) => n > 0 && this.log.info({ envId, removed: n }, 'removed mirrors of an inactive env'),
        (err) => {
          this.clean.delete(envId);
          this.log[this.opts.cluster.reachability.levelFor(err)](
            { envId, err: apiErrorMessage(err) },
            'could not remove mirrors',
          );
        },
      );
    }
  }

  private beginEnv(envId: string, namespace: string, ns: NamespaceView): void {
    const e: EnvSync = {
      envId,
      namespace,
      sessionId: ns.annotations[ANNOTATIONS.session],
      student: ns.annotations[ANNOTATIONS.student],
      dirty: false,
      stopped: false,
      reported: new Set(readRefused(ns.annotations).map(refusalKey)),
      // Nothing published is the starting point: only a change is news.
      publishedSignature: '[]',
      apiDown: false,
      hostFailures: 0,
    };
    this.envs.set(envId, e);
    void this.connect(e, this.retryInitialMs);
  }

  private async connect(e: EnvSync, delayMs: number): Promise<void> {
    try {
      const secrets = await readEnvSecrets(this.opts.cluster, e.namespace);
      if (!secrets) throw new Error('the env has no CA secret');
      // The one issued with the env, made off the claim's path; an env made
      // before it, or one that waited warm almost as long as it lasts, gets
      // one here, held in memory only and valid a little longer than the
      // longest session.
      const sessionMs = this.opts.config.sessions.maxMinutes * 60_000;
      const client =
        secrets.syncClient && validFor(secrets.syncClient, sessionMs + 86_400_000)
          ? secrets.syncClient
          : await syncClientCertificate(secrets.ca, Math.ceil(sessionMs / 86_400_000) + 1);
      if (e.stopped) return;
      const watch = new StudentClusterWatch({
        envId: e.envId,
        executor: this.opts.executor,
        tls: this.opts.config.sync.apiTls,
        controlPlaneIp: () => this.controlPlaneIp(e.namespace),
        ca: secrets.ca,
        client,
        resyncMs: this.opts.config.sync.resyncSeconds * 1000,
        retryInitialMs: this.retryInitialMs,
        retryMaxMs: this.retryMaxMs,
        onServices: (services, relisted) => {
          e.services = services;
          e.changedAt ??= Date.now();
          this.log.debug({ envId: e.envId, relisted }, 'student services changed');
          // A full relist re-reads the host too: the watchdog covers both sides.
          if (relisted) e.host = undefined;
          this.pump(e);
        },
        onReachable: (reachable, error) => this.reachable(e, reachable, error),
      });
      e.watch = watch;
      await watch.start();
    } catch (err) {
      if (e.stopped) return;
      this.reachable(e, false, (err as Error).message);
      e.retry = setTimeout(
        () => void this.connect(e, Math.min(this.retryMaxMs, delayMs * 2)),
        delayMs,
      );
      e.retry.unref();
    }
  }

  private async controlPlaneIp(namespace: string): Promise<string> {
    const vmis = await this.opts.cluster.listVmis(namespace);
    const cp = vmis.find((v) => v.name === 'control-plane');
    if (cp?.phase !== 'Running' || !cp.uid) throw new Error('the control plane VM is not running');
    // Its launcher pod's address, never what the guest reports.
    const ip = (await this.opts.cluster.launcherAddresses(namespace)).get(cp.uid);
    if (!ip) throw new Error('the control plane VM has no address yet');
    return ip;
  }

  /** One line when a student API server goes away and one when it is back, not one per retry. */
  private reachable(e: EnvSync, reachable: boolean, error?: string): void {
    if (reachable && e.apiDown) {
      e.apiDown = false;
      this.log.info({ envId: e.envId }, 'student API server reachable again; resyncing mirrors');
    } else if (!reachable && !e.apiDown) {
      e.apiDown = true;
      this.log.warn(
        { envId: e.envId, err: error },
        'student API server unreachable; keeping its mirrors and retrying with backoff',
      );
    }
  }

  /** Reconciles now, or once more right after the reconcile under way. */
  private pump(e: EnvSync): void {
    if (e.stopped) return;
    if (e.running) {
      e.dirty = true;
      return;
    }
    e.running = (async () => {
      do {
        e.dirty = false;
        try {
          await this.reconcileEnv(e);
          if (!e.dirty) await this.publish(e);
          e.hostFailures = 0;
        } catch (err) {
          if (e.stopped) return;
          const delay = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** e.hostFailures++);
          if (e.hostFailures === 1)
            this.log[this.opts.cluster.reachability.levelFor(err)](
              { envId: e.envId, err: apiErrorMessage(err) },
              'mirroring failed; retrying',
            );
          clearTimeout(e.retry);
          e.retry = setTimeout(() => this.pump(e), delay);
          e.retry.unref();
          return;
        }
      } while (e.dirty && !e.stopped);
    })().finally(() => {
      e.running = undefined;
    });
  }

  private async reconcileEnv(e: EnvSync): Promise<void> {
    const services = e.services;
    if (!services || e.stopped) return;
    const changedAt = e.changedAt;
    e.changedAt = undefined;
    try {
      await this.reconcileServices(e, services, changedAt);
    } catch (err) {
      e.changedAt ??= changedAt;
      throw err;
    }
  }

  private async reconcileServices(
    e: EnvSync,
    services: readonly V1Service[],
    changedAt: number | undefined,
  ): Promise<void> {
    const started = Date.now();
    // The host as last read or written; read afresh after a relist or an error.
    let host = e.host;
    if (!host) {
      const [services, policy] = await Promise.all([
        this.mirrors.list(e.namespace),
        this.mirrors.readPolicy(e.namespace),
      ]);
      host = { services, policy };
    }
    const plan = planMirrors(
      studentPorts(services),
      this.limits,
      new Set(host.services.map((s) => s.metadata?.name ?? '')),
    );
    if (e.stopped) return;
    e.host = undefined;
    const planned = Date.now();
    const applied = await this.mirrors.apply(e, plan.mirrors, host);
    e.host = applied.state;
    // Where a change's time goes (waiting behind the previous reconcile, reading the host, writing it).
    this.log.debug(
      {
        envId: e.envId,
        queuedMs: changedAt === undefined ? undefined : started - changedAt,
        hostReadMs: planned - started,
        hostWriteMs: Date.now() - planned,
        mirrors: plan.mirrors.length,
      },
      'mirrors reconciled',
    );
    const refusedByHost = applied.refused;
    await this.report(e, [...plan.refused, ...refusedByHost]);
    const refusedNames = new Set(refusedByHost.map((r) => `${r.service}:${r.port}/${r.protocol}`));
    const live = plan.mirrors.filter(
      (m) => !refusedNames.has(`${m.namespace}/${m.service}:${m.port}/${m.protocol}`),
    );
    e.liveSignature = JSON.stringify(live.map((m) => [m.name, m.nodePort]));
  }

  /**
   * Tells the student what is published, when it changed. Runs only once the
   * env is caught up (no change waiting), so a burst of changes is one
   * message and the next change is not held up behind this read.
   */
  private async publish(e: EnvSync): Promise<void> {
    const signature = e.liveSignature;
    if (signature === undefined || signature === e.publishedSignature || e.stopped) return;
    const ports = await this.mirrors.published(e.namespace);
    e.publishedSignature = signature;
    this.log.info(
      { envId: e.envId, ports: ports.map((p) => `${p.service}:${p.port} → ${p.address}`) },
      'published ports changed',
    );
    this.opts.events.emit({
      type: 'sync.published',
      envId: e.envId,
      sessionId: e.sessionId,
      student: e.student,
      ports: ports.map((p) => ({
        service: p.service,
        port: p.port,
        protocol: p.protocol,
        address: p.address,
      })),
    });
  }

  /** Each refusal once: new ones become events; the Namespace annotation remembers them all. */
  private async report(e: EnvSync, refused: RefusedPort[]): Promise<void> {
    const keys = new Set(refused.map(refusalKey));
    const fresh = refused.filter((r) => !e.reported.has(refusalKey(r)));
    const same = keys.size === e.reported.size && [...keys].every((k) => e.reported.has(k));
    if (same) return;
    await this.opts.cluster.patchNamespaceMeta(e.namespace, {
      annotations: {
        [SYNC_ANNOTATIONS.refused]: refused.length > 0 ? JSON.stringify(refused) : null,
      },
    });
    e.reported = keys;
    for (const r of fresh) {
      const message = refusalMessage(r);
      this.log.info({ envId: e.envId, refused: message }, 'student port not published');
      this.opts.events.emit({
        type: 'sync.refused',
        envId: e.envId,
        sessionId: e.sessionId,
        student: e.student,
        service: r.service,
        port: r.port,
        protocol: r.protocol,
        reason: r.reason,
        message,
      });
    }
  }

  private async halt(e: EnvSync): Promise<void> {
    e.stopped = true;
    clearTimeout(e.retry);
    await e.watch?.stop();
    await e.running;
  }

  /** The session ended (or the env went away): stop watching; with `cleanup`, every mirror goes. */
  private async endEnv(e: EnvSync, cleanup: boolean): Promise<void> {
    if (this.envs.get(e.envId) !== e) return;
    this.envs.delete(e.envId);
    if (cleanup) this.clean.add(e.envId);
    await this.halt(e);
    if (!cleanup) return;
    for (
      let delay = this.retryInitialMs;
      !this.stopped;
      delay = Math.min(this.retryMaxMs, delay * 2)
    ) {
      try {
        const removed = await this.mirrors.removeAll(e.namespace);
        await this.opts.cluster.patchNamespaceMeta(e.namespace, {
          annotations: { [SYNC_ANNOTATIONS.refused]: null },
        });
        this.log.info({ envId: e.envId, removed }, 'session over: mirrors removed');
        return;
      } catch (err) {
        if (/not found/i.test(apiErrorMessage(err))) return;
        this.log[this.opts.cluster.reachability.levelFor(err)](
          { envId: e.envId, err: apiErrorMessage(err) },
          'removing mirrors failed; retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}

/** The refusals an env's Namespace remembers (in its annotations). */
export function readRefused(
  annotations: Readonly<Record<string, string>> | undefined,
): RefusedPort[] {
  const raw = annotations?.[SYNC_ANNOTATIONS.refused];
  if (!raw) return [];
  try {
    const parsed = JSON.parse(raw) as unknown;
    return Array.isArray(parsed) ? (parsed as RefusedPort[]) : [];
  } catch {
    return [];
  }
}
