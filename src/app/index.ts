import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { rejectAfter } from '../deadline/index.js';
import { Redis } from 'ioredis';
import { RedisReachability, connectRedis, runUnderLease } from '../redis/index.js';
import cron, { type ScheduledTask } from 'node-cron';
import type { Worker } from 'bullmq';
import type { Config } from '../config/index.js';
import { EventBus } from '../events/index.js';
import { HostCluster, loadKubeConfig } from '../kube/client.js';
import { EnvIdentities, envNamespace } from '../kube/index.js';
import { NamespaceEventRecorder } from '../kube/events.js';
import { formatProblems, loadLabs, type Lab } from '../labs/index.js';
import { createLogger, moduleLogger, type Logger } from '../log/index.js';
import { createMetrics, type Metrics } from '../metrics/index.js';
import { startApi } from '../api/index.js';
import type { PoolContext } from '../pool/context.js';
import { provisionEnv } from '../pool/provision.js';
import {
  JobQueues,
  QUEUE_NAMES,
  closeWorker,
  startWorker,
  wasReported,
  type MaintenanceJob,
} from '../pool/queues.js';
import { reconcile } from '../pool/reconcile.js';
import { replenishPool } from '../pool/replenish.js';
import { teardownEnv } from '../pool/teardown.js';
import { sweepExpiredSessions } from '../sessions/expiry.js';
import { prepareSession } from '../sessions/prepare.js';
import { watchNodeRestarts } from '../sessions/restarts.js';
import { SessionService } from '../sessions/service.js';
import { clusterNodes, publishSessionChanges } from '../sessions/directory.js';
import {
  createExecutor,
  directResolver,
  fileResolver,
  loadOrCreateHostKey,
  type Gateway,
  type GuestResolver,
} from '../ssh/index.js';
import { Store } from '../store/index.js';
// The Slack front end and notifier are loaded only when Slack is configured:
// @slack/bolt and its dependencies are ≈ 15 MiB of RSS a labvirt without
// Slack (API and CLI only, the SSH gateway) would carry for nothing.
import { recordFailures } from '../slack/failures.js';
import type { Notifier, SlackHandle, SlackSecrets } from '../slack/index.js';
import { NodePortSync } from '../sync/index.js';
import { createWebFrontEnd, linkEventFeed, type GatewayTarget } from '../web/index.js';
import { namespaceEventFor } from './env-events.js';
import { sessionChangesChannel, startGatewayRole } from './gateway.js';
import { keyStoreFor } from './keys.js';

export interface LabvirtOptions {
  config: Config;
  logger?: Logger;
  /** Bearer token of the HTTP API (read from the variable named by `api.tokenEnv` by the CLI). */
  apiToken: string;
  /** How labvirt reaches guest IPs; default: `kube.guestAddressMap` when set, else directly. */
  resolver?: GuestResolver;
  /** Which parts run in this process (all by default). */
  roles?: Partial<Record<'api' | 'workers' | 'gateway' | 'scheduler' | 'sync', boolean>>;
  now?: () => number;
  /**
   * Slack secrets (read by the CLI from the variables `slack.*Env` name). With
   * a bot token, students with a Slack identity get DM notifications: every
   * replica enqueues what happens in it, and takes part in delivering them.
   */
  slack?: SlackSecrets;
  /** Web API retries of the Slack front end's own calls (tests: 0); Bolt's default otherwise. */
  slackClientRetries?: number;
}

export interface LabvirtHandle {
  service: SessionService;
  events: EventBus;
  metrics: Metrics;
  store: Store;
  context: PoolContext;
  apiUrl?: string;
  gatewayPort?: number;
  /** Slack notifications (when a bot token was given). */
  notifier?: Notifier;
  /** Where Slack's HTTP requests go (`<slackUrl>/slack/events`), in HTTP mode. */
  slackUrl?: string;
  /** Runs one maintenance task now, in this process (tests, CLI). */
  runMaintenance(task: MaintenanceJob['task']): Promise<unknown>;
  stop(): Promise<void>;
}

/** Loads the labs and refuses to start when any is malformed. */
export async function loadLabRegistry(config: Config): Promise<Map<string, Lab>> {
  const { labs, problems } = await loadLabs(config.labsDir, {
    flavors: Object.keys(config.flavors),
    maxSessionMinutes: config.sessions.maxMinutes,
  });
  if (problems.length > 0) {
    throw new Error(`labs in ${config.labsDir} have problems:\n${formatProblems(problems)}`);
  }
  return new Map(labs.map((lab) => [lab.id, lab]));
}

/** Redis connection options for BullMQ from a redis:// URL. */
function bullConnection(url: string) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username || undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    maxRetriesPerRequest: null,
  };
}

/** How long past the grace period a stop may take before its remaining parts are left behind. */
const STOP_MARGIN_MS = 5000;

/** Starts labvirt: orchestrator, workers, schedules, SSH gateway and HTTP API. */
export async function startLabvirt(options: LabvirtOptions): Promise<LabvirtHandle> {
  const { config } = options;
  const roles = {
    api: true,
    workers: true,
    gateway: true,
    scheduler: true,
    sync: true,
    ...options.roles,
  };
  const log = options.logger ?? createLogger({ level: config.logLevel });
  const now = options.now ?? Date.now;
  // Each part with its name, so a stop that leaves one behind says which.
  type Part = { name: string; stop: () => Promise<void> };
  const stack: Part[] = [];
  const onStop = (name: string, stop: () => Promise<void>) => void stack.push({ name, stop });
  // Stopped before the stack: the job workers hand their running jobs back
  // while what those jobs use (cluster, executor, Redis) is still open, and
  // before the later parts (API, gateway, Slack…) can use up the deadline.
  const stopFirst: Part[] = [];
  const stopAll = async () => {
    // A part that waits on something gone (a Redis that is down holds BullMQ's
    // and ioredis's closes) must not hold the shutdown past the grace period:
    // each is waited for until the deadline (at least a second), then left.
    const deadline = Date.now() + config.pool.shutdownGraceSeconds * 1000 + STOP_MARGIN_MS;
    const late = new Error('late');
    for (const part of [...stopFirst, ...stack.reverse()]) {
      try {
        await rejectAfter(
          Promise.resolve().then(part.stop),
          Math.max(1000, deadline - Date.now()),
          () => late,
        );
      } catch (err) {
        if (err === late)
          log.warn(
            { part: part.name },
            `${part.name} did not stop within the grace period; not waiting for it`,
          );
        else log.warn({ part: part.name, err: (err as Error).message }, 'error while stopping');
      }
    }
    stack.length = 0;
    stopFirst.length = 0;
  };

  try {
    const labs = await loadLabRegistry(config);
    const events = new EventBus((err, event) =>
      log.warn({ err: (err as Error).message, event: event.type }, 'event listener failed'),
    );

    // One account of Redis's reachability for every connection of this process.
    const reachability = new RedisReachability(log);
    const redis = await connectRedis(config.redis.url, reachability);
    onStop('Redis connection', async () => void redis.disconnect());
    const store = new Store(redis, config.redis.prefix);

    // Every process tells the gateways (in any process) of its session changes.
    const stopPublishingChanges = publishSessionChanges({
      events,
      publisher: redis,
      channel: sessionChangesChannel(config),
    });
    onStop('session change publisher', async () => stopPublishingChanges());

    // The metrics need the service, the service needs the cluster client: count through a late-bound ref.
    const metricsRef: { current?: Metrics } = {};
    const cluster = new HostCluster(loadKubeConfig(config.kube), {
      logger: moduleLogger(log, 'kube', config.logLevels),
      onRequest: (verb, resource) => metricsRef.current?.observeKubeRequest(verb, resource),
    });
    onStop('host cluster client', () => cluster.close());

    // `kubectl describe ns lab-…` tells each env's story.
    const namespaceEvents = new NamespaceEventRecorder(cluster, {
      logger: moduleLogger(log, 'kube-events', config.logLevels),
    });
    const stopNamespaceEvents = events.onAny((e) => {
      const event = namespaceEventFor(config, e);
      if (event) void namespaceEvents.record(event);
    });
    onStop('namespace events', async () => stopNamespaceEvents());

    // The web terminal bridge's key for the SSH gateway (withBridgeKey): no
    // env's guest trusts it; each env has its own key (envIdentities).
    const orchestratorKey = await loadOrCreateHostKey(
      keyStoreFor(config.ssh.orchestratorKey, cluster),
    );
    // Each env's own login key and its nodes' host keys, from its PKI Secret.
    const envIdentities = new EnvIdentities(cluster, (envId) => envNamespace(config, envId));
    const identity = (envId: string) => envIdentities.get(envId);
    // A guest showing a host key other than its own: the env is reported broken.
    const onHostKeyMismatch = (envId: string, error: Error) => {
      void store
        .getEnv(envId)
        .then((env) =>
          events.emit({
            type: 'env.failed',
            envId,
            flavor: env?.flavor ?? 'unknown',
            attempt: 0,
            willRetry: false,
            reason: error.message,
          }),
        )
        .catch(() => undefined);
    };
    // The gateway's own key for its hop to the guests: each claim installs
    // its public half for `student` (executor), the gateway logs in with it.
    const gatewayClientKey =
      config.ssh.mode === 'gateway'
        ? await loadOrCreateHostKey(keyStoreFor(config.ssh.gatewayClientKey, cluster))
        : undefined;
    const resolver =
      options.resolver ??
      (config.kube.guestAddressMap ? fileResolver(config.kube.guestAddressMap) : directResolver);
    const executor = createExecutor({
      identity,
      gatewayPublicKey: gatewayClientKey?.publicKey,
      onHostKeyMismatch: (target, error) => onHostKeyMismatch(target.envId, error),
      resolve: resolver,
      logger: moduleLogger(log, 'executor', config.logLevels),
    });
    onStop('executor', async () => executor.close());

    const connection = bullConnection(config.redis.url);
    const queues = new JobQueues({
      connection,
      prefix: `${config.redis.prefix}-jobs`,
      provisionAttempts: config.pool.provisionAttempts,
      maxProvisioning: config.pool.maxProvisioning,
      onError: (err, queue) => reachability.error(err, `queue ${queue}`, 'warn', 'queue error'),
    });
    onStop('job queues', () => queues.close());
    await queues.applyGlobalLimits();

    const ctx: PoolContext = {
      config,
      store,
      cluster,
      queues,
      executor,
      events,
      labs,
      log: moduleLogger(log, 'orchestrator', config.logLevels),
      now,
    };
    const service = new SessionService(ctx, {
      redis: async () => void (await redis.ping()),
      cluster: () => cluster.ping(),
    });
    const metrics = createMetrics({ service, events });
    metricsRef.current = metrics;
    metrics.watchDependency('redis', reachability.outage);
    metrics.watchDependency('host_api', cluster.reachability.outage);

    let notifier: Notifier | undefined;
    if (options.slack?.botToken) {
      const { startNotifier } = await import('../slack/notifier.js');
      notifier = await startNotifier({
        connection,
        prefix: `${config.redis.prefix}-jobs`,
        store,
        service,
        events,
        log,
        onError: (err, what) => reachability.error(err, what, 'warn', 'notification queue error'),
        // Delivering is light (a few Slack calls a session), so every replica
        // with the bot token takes part; the queue lets one deliver each.
        slack: { botToken: options.slack.botToken, apiUrl: config.slack.apiUrl },
        callsPerSecond: config.slack.notifyCallsPerSecond,
        linePositionEditMs: config.slack.linePositionEditSeconds * 1000,
        jobLockMs: config.pool.jobLockSeconds * 1000,
        // A crashed replica's hold on a session lapses about when its job is
        // found stalled, so another replica can finish the job.
        lockMs: Math.max(3000, config.pool.jobLockSeconds * 1000),
        now,
      });
      onStop('Slack notifier', () => notifier!.close());
    }

    // Maintenance runs one task at a time: across replicas through the
    // maintenance queue's global concurrency, within this process (direct
    // calls from `dev`, `labs test` and tests) through this chain.
    let maintenanceChain: Promise<unknown> = Promise.resolve();
    const runTask = async (task: MaintenanceJob['task']): Promise<unknown> => {
      // Until the indexes are rebuilt from the cluster, counting would lie.
      if (task !== 'reconcile' && !(await store.isInitialized())) {
        const report = await reconcile(ctx);
        if (task === 'replenish') return { reconcile: report, replenish: await replenishPool(ctx) };
        return report;
      }
      switch (task) {
        case 'replenish':
          return replenishPool(ctx);
        case 'expire':
          return sweepExpiredSessions(ctx);
        case 'reconcile': {
          const report = await reconcile(ctx);
          return { reconcile: report, replenish: await replenishPool(ctx) };
        }
      }
    };
    const runMaintenance = (task: MaintenanceJob['task']): Promise<unknown> => {
      const run = maintenanceChain.then(() => runTask(task));
      maintenanceChain = run.catch(() => undefined);
      return run;
    };

    if (roles.workers) {
      const settings = {
        connection,
        prefix: `${config.redis.prefix}-jobs`,
        concurrency: config.pool.workerConcurrency,
        lockSeconds: config.pool.jobLockSeconds,
      };
      const workers: Worker[] = [
        startWorker(QUEUE_NAMES.provision, settings, (job) => provisionEnv(ctx, job)),
        startWorker(
          QUEUE_NAMES.prepare,
          settings,
          (job) => prepareSession(ctx, job),
          config.pool.prepareConcurrency,
        ),
        startWorker(QUEUE_NAMES.teardown, settings, (job) => teardownEnv(ctx, job)),
        startWorker<MaintenanceJob>(
          QUEUE_NAMES.maintenance,
          settings,
          async (job) => void (await runMaintenance(job.data.task)),
          1,
        ),
      ];
      for (const w of workers) {
        w.on('failed', (job, err) => {
          // The env or session it was for, as on every other pool and sessions line.
          const { envId, sessionId } = (job?.data ?? {}) as { envId?: string; sessionId?: string };
          // A failure its handler logged already (with more to say) is one
          // warning, not two; one the host API's outage explains is in its warning.
          log[wasReported(err) ? 'debug' : cluster.reachability.levelFor(err)](
            { queue: w.name, job: job?.id, envId, sessionId, err: err.message },
            'job failed',
          );
        });
        w.on('error', (err) =>
          reachability.error(err, `worker ${w.name}`, 'error', 'worker error'),
        );
      }
      stopFirst.push({
        name: 'job workers',
        stop: async () => {
          await Promise.all(
            workers.map((w) => closeWorker(w, config.pool.shutdownGraceSeconds * 1000)),
          );
        },
      });
      // Every worker replica follows the VMIs; a restart is reported once (Redis).
      const stopNodeRestarts = watchNodeRestarts(ctx);
      onStop('node restart watch', async () => stopNodeRestarts());
    }

    if (roles.scheduler) {
      // node-cron ticks in every replica; each tick only *enqueues* a
      // deduplicated maintenance job, and the maintenance queue runs one job
      // at a time across all replicas. So replicas never double the work.
      const tasks: ScheduledTask[] = [
        cron.schedule(config.pool.replenishCron, () => queues.addMaintenance('replenish'), {
          name: 'replenish',
        }),
        cron.schedule(config.sessions.expiryCron, () => queues.addMaintenance('expire'), {
          name: 'expire',
        }),
        cron.schedule(config.pool.reconcileCron, () => queues.addMaintenance('reconcile'), {
          name: 'reconcile',
        }),
      ];
      onStop('schedules', async () => {
        for (const t of tasks) await t.destroy();
      });
      await queues.addMaintenance('reconcile');
    }

    if (roles.sync && config.sync.enabled) {
      // Correct in any number of replicas (it converges on the same labelled
      // host objects), but each would hold a relay and a watch per active
      // env: one replica at a time runs it, under a lease.
      const sync = runUnderLease({
        redis,
        key: `${config.redis.prefix}:lease:nodeport-sync`,
        holder: `${hostname()}:${process.pid}:${randomUUID()}`,
        ttlMs: config.sync.leaseSeconds * 1000,
        role: 'nodeport-sync',
        start: () => {
          const running = new NodePortSync({ config, cluster, executor, events, logger: log });
          running.start();
          return running;
        },
        log,
      });
      metrics.watchLease('nodeport-sync', sync);
      onStop('NodePort sync', () => sync.stop());
    }

    let gatewayPort: number | undefined;
    let gatewayHostKey: string | undefined;
    let localGateway: Gateway | undefined;
    if (roles.gateway && gatewayClientKey) {
      const role = await startGatewayRole({
        config,
        log,
        redis,
        reachability,
        store,
        keyStore: (spec) => keyStoreFor(spec, cluster),
        clientKey: gatewayClientKey.privateKey,
        bridgeKey: orchestratorKey.publicKey,
        resolve: resolver,
        events,
        // Sessions activated before their nodes were recorded in Redis.
        legacy: { nodes: clusterNodes(ctx, identity), identity },
        onHostKeyMismatch,
        now,
      });
      gatewayPort = role.gateway.port;
      gatewayHostKey = role.hostPublicKey;
      localGateway = role.gateway;
      metrics.watchGateway(role.gateway);
      onStop('SSH gateway', () => role.stop());
    }

    // Every replica records the failures it sees, for operators' Slack views.
    const stopRecordingFailures = recordFailures(events, store, log);
    onStop('failure recorder', async () => stopRecordingFailures());

    // The Slack front end runs where the HTTP API does (it shares its port
    // unless slack.port says otherwise).
    let slack: SlackHandle | undefined;
    if (roles.api && notifier && options.slack) {
      // Auto-pipelined: a burst's replay marks and rate counts, issued in the
      // same tick by many requests, go to Redis in one write.
      const frontDoorRedis = reachability.watch(
        redis.duplicate({ enableAutoPipelining: true }),
        'Slack front door',
      );
      onStop('Slack front door Redis connection', async () => void frontDoorRedis.disconnect());
      const { startSlack } = await import('../slack/start.js');
      slack = await startSlack({
        config,
        secrets: options.slack,
        service,
        store,
        frontDoorStore: new Store(frontDoorRedis, config.redis.prefix),
        notifier,
        log,
        now,
        clientRetries: options.slackClientRetries,
      });
      if (slack) onStop('Slack app', () => slack!.stop());
    }

    let apiUrl: string | undefined;
    if (roles.api) {
      // The web pages' live feed hears every replica's events through Redis.
      const feedSubscriber = reachability.watch(redis.duplicate(), 'web feed subscriber');
      const feed = await linkEventFeed({
        events,
        publisher: redis,
        subscriber: feedSubscriber,
        channel: `${config.redis.prefix}:events`,
      });
      onStop('web event feed', () => feed.close());
      // Gateways in other processes accept the bridge's key from Redis.
      if (config.ssh.mode === 'gateway') await store.setBridgePublicKey(orchestratorKey.publicKey);
      // A worker's shell is a hop from the gateway: the bridge logs in there
      // with the session env's own key and requires the worker's host key.
      const guestIdentity = async (sessionId: string) => {
        const session = await store.getSession(sessionId);
        if (!session?.envId) throw new Error(`session ${sessionId} has no environment`);
        return envIdentities.get(session.envId);
      };
      // Web terminals enter through this replica's gateway, else the one students use.
      const webGateway = (): GatewayTarget | undefined =>
        config.ssh.mode !== 'gateway'
          ? undefined
          : gatewayPort !== undefined
            ? {
                host: '127.0.0.1',
                port: gatewayPort,
                privateKey: orchestratorKey.privateKey,
                hostPublicKey: gatewayHostKey,
                // The same process: the gateway's in-process sessions, no SSH in between.
                local: localGateway,
                guestIdentity,
              }
            : {
                host: config.ssh.publicHost,
                port: config.ssh.gatewayPort,
                privateKey: orchestratorKey.privateKey,
                guestIdentity,
              };
      const web = await createWebFrontEnd({
        service,
        tokens: store,
        apiToken: options.apiToken,
        gateway: webGateway,
        feed,
        poolAdmin: service,
        operators: config.web.operators,
        loginAttempts: store,
        loginAttemptsPerMinute: config.web.loginAttemptsPerMinute,
        logger: moduleLogger(log, 'web', config.logLevels),
        publicUrl: config.api.publicUrl,
        now,
      });
      // The rate limits' own connection gives up on a command within a second
      // (counting in memory meanwhile): one sent as Redis went down would
      // otherwise be retried for ~15 s, holding every request behind it.
      const limitsRedis = new Redis(config.redis.url, {
        maxRetriesPerRequest: 1,
        commandTimeout: 1000,
      });
      limitsRedis.on('error', () => undefined);
      onStop('API rate limit Redis connection', async () => void limitsRedis.disconnect());
      const api = await startApi({
        service,
        events,
        metrics,
        token: options.apiToken,
        logger: moduleLogger(log, 'api', config.logLevels),
        host: config.api.host,
        port: config.api.port,
        rawRoutes: slack?.httpListener
          ? [{ path: '/slack/events', listener: slack.httpListener }]
          : undefined,
        keyLinks: config.api.publicUrl ? store : undefined,
        limits: {
          perTokenPerMinute: config.api.requestsPerMinutePerToken,
          perStudentPerMinute: config.api.requestsPerMinutePerStudent,
          maxConcurrentChecks: config.api.maxConcurrentChecks,
          redis: limitsRedis,
          keyPrefix: `${config.redis.prefix}:api-rate`,
        },
        poolAdmin: service,
        web,
        // Clients waiting on a session hear every replica's events.
        sessionUpdates: {
          subscribe: (listener) => feed.subscribe((entry) => listener(entry.event)),
        },
      });
      apiUrl = api.url;
      onStop('HTTP API', () => api.close());
    }

    log.info({ apiUrl, gatewayPort, labs: labs.size }, 'labvirt started');
    return {
      service,
      events,
      metrics,
      store,
      context: ctx,
      apiUrl,
      gatewayPort,
      notifier,
      slackUrl: slack?.url ?? (slack?.httpListener && apiUrl ? apiUrl : undefined),
      runMaintenance,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
