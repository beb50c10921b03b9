import { Redis, type RedisOptions } from 'ioredis';
import { settlesWithin } from '../deadline/index.js';
import { Queue, Worker, type ConnectionOptions, type Job, type JobsOptions } from 'bullmq';

/**
 * BullMQ queues of labvirt. Job ids are derived from what the job is about,
 * so adding the same work twice (a retry from Slack, a reconcile pass after a
 * crash) does not run it twice while the first is still queued or running.
 * BullMQ refuses `:` in custom job ids, hence the dashes.
 */
export const QUEUE_NAMES = {
  provision: 'provision',
  prepare: 'prepare',
  teardown: 'teardown',
  maintenance: 'maintenance',
} as const;

export type MaintenanceTask = 'replenish' | 'expire' | 'reconcile';

export interface ProvisionJob {
  envId: string;
  flavor: string;
}
export interface PrepareJob {
  sessionId: string;
  envId: string;
}
export interface TeardownJob {
  envId: string;
  reason: string;
}
export interface MaintenanceJob {
  task: MaintenanceTask;
}

export interface QueueSettings {
  connection: ConnectionOptions;
  prefix: string;
  provisionAttempts: number;
  /** Envs provisioned at once across every replica. */
  maxProvisioning: number;
  /** A queue's errors (its own Redis connection's among them); BullMQ prints them to stderr when unheard. */
  onError?: (err: Error, queue: string) => void;
}

const KEEP = { removeOnComplete: true, removeOnFail: { age: 24 * 3600, count: 1000 } } as const;
/** From a 30 s delay: the last try about two hours later; the scheduled reconcile goes on. */
const HOST_REPAIR_ATTEMPTS = 8;

export class JobQueues {
  readonly provision: Queue<ProvisionJob>;
  readonly prepare: Queue<PrepareJob>;
  readonly teardown: Queue<TeardownJob>;
  readonly maintenance: Queue<MaintenanceJob>;

  constructor(private readonly settings: QueueSettings) {
    const opts = { connection: settings.connection, prefix: settings.prefix };
    this.provision = new Queue(QUEUE_NAMES.provision, opts);
    this.prepare = new Queue(QUEUE_NAMES.prepare, opts);
    this.teardown = new Queue(QUEUE_NAMES.teardown, opts);
    this.maintenance = new Queue(QUEUE_NAMES.maintenance, opts);
    const onError = settings.onError;
    if (onError) {
      for (const queue of [this.provision, this.prepare, this.teardown, this.maintenance]) {
        queue.on('error', (err) => onError(err, queue.name));
      }
    }
  }

  /**
   * Global limits that hold across replicas: provisioning protects the host
   * cluster; maintenance runs one task at a time anywhere, which is what keeps
   * two replenishers from ever running at once.
   */
  async applyGlobalLimits(): Promise<void> {
    await this.provision.setGlobalConcurrency(this.settings.maxProvisioning);
    await this.maintenance.setGlobalConcurrency(1);
  }

  async addProvision(job: ProvisionJob): Promise<void> {
    await this.provision.add('provision', job, {
      ...KEEP,
      jobId: `provision-${job.envId}`,
      attempts: this.settings.provisionAttempts,
      backoff: { type: 'exponential', delay: 2000 },
    });
  }

  async addPrepare(job: PrepareJob): Promise<void> {
    await this.prepare.add('prepare', job, {
      ...KEEP,
      jobId: `prepare-${job.sessionId}-${job.envId}`,
      // Lab setup is retried by moving the student to another env, not here;
      // the extra attempts only cover a worker that crashed mid-job.
      attempts: 2,
      backoff: { type: 'fixed', delay: 1000 },
    });
  }

  async addTeardown(job: TeardownJob): Promise<void> {
    await this.teardown.add('teardown', job, {
      ...KEEP,
      jobId: `teardown-${job.envId}`,
      attempts: 10,
      backoff: { type: 'exponential', delay: 1000 },
    });
  }

  /**
   * Tears an env down again after its teardown job gave up: the failed job is
   * kept (a day) under the same id, which would make a new add a no-op.
   */
  async retryTeardown(job: TeardownJob): Promise<void> {
    const earlier = await this.teardown.getJob(`teardown-${job.envId}`);
    if (earlier && (await earlier.isFailed())) await earlier.remove();
    await this.addTeardown(job);
  }

  /**
   * Asks for a maintenance task. Requests coalesce: while one waits to run,
   * another is dropped (the waiting run reads the state when it starts);
   * while one runs, one more is kept and runs after it, because the running
   * one may already have read the state the request is about. (The 1 s
   * time-to-live used before dropped that second request too: a student who
   * joined the line just after a replenish had read it waited for the next
   * cron tick, up to a minute, for an env to be provisioned.)
   */
  async addMaintenance(task: MaintenanceTask): Promise<void> {
    await this.maintenance.add('maintenance', { task }, {
      ...KEEP,
      deduplication: { id: `maintenance-${task}`, keepLastIfActive: true },
      attempts: 1,
    } satisfies JobsOptions);
  }

  /**
   * A reconcile `delayMs` from now, tried again with a doubling delay while
   * it fails (the host API server still away): what an env's state that could
   * not be written to the host (the `active` label of a claim, an extension's
   * expiry) waits for, instead of the scheduled reconcile minutes later. One
   * at a time across replicas, however many ask meanwhile, and one more
   * after a run that a request arrived during; beside the scheduled one,
   * not instead of it.
   */
  async addHostRepair(delayMs: number): Promise<void> {
    await this.maintenance.add('maintenance', { task: 'reconcile' }, {
      ...KEEP,
      delay: delayMs,
      // Kept when one runs: that run may have passed the env already (an
      // extension whose expiry write failed while the label's repair ran
      // was lost until the scheduled reconcile).
      deduplication: { id: 'maintenance-host-repair', keepLastIfActive: true },
      attempts: HOST_REPAIR_ATTEMPTS,
      backoff: { type: 'exponential', delay: delayMs },
    } satisfies JobsOptions);
  }

  async counts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const q of [this.provision, this.prepare, this.teardown, this.maintenance]) {
      out[q.name] = await q.getJobCounts('wait', 'active', 'delayed', 'failed', 'prioritized');
    }
    return out;
  }

  /**
   * Closes the queues' connections. A Redis that does not answer (down, or
   * reconnecting) would hold BullMQ's `QUIT` forever: after `timeoutMs` the
   * connections are dropped instead, so a shutdown always ends.
   */
  async close(timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
    const queues = [this.provision, this.prepare, this.teardown, this.maintenance];
    if (await settlesWithin(Promise.all(queues.map((q) => q.close())), timeoutMs)) return;
    await settlesWithin(Promise.all(queues.map((q) => q.disconnect())), 500);
  }
}

export interface WorkerSettings {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  lockSeconds: number;
}

/** Errors a job's handler has logged itself, with more to say than the worker's line. */
const reported = new WeakSet<object>();

/**
 * Marks an error its handler logged before throwing it on (a provision
 * attempt names its flavor, attempt and reason): the worker's `job failed`
 * line for it goes to debug level, so one failure is one warning.
 */
export function markReported(err: unknown): void {
  if (typeof err === 'object' && err !== null) reported.add(err);
}

/** Whether a handler already logged this error (see {@link markReported}). */
export function wasReported(err: unknown): boolean {
  return typeof err === 'object' && err !== null && reported.has(err);
}

/** The jobs each worker is running, with their lock tokens (to hand them back on shutdown). */
const running = new WeakMap<Worker, Map<string, { job: Job; token: string | undefined }>>();

/** A BullMQ worker with labvirt's defaults: stalled jobs recovered after one lock period. */
export function startWorker<T>(
  queue: string,
  settings: WorkerSettings,
  handler: (job: Job<T>) => Promise<void>,
  concurrency = settings.concurrency,
): Worker<T> {
  const active = new Map<string, { job: Job; token: string | undefined }>();
  const tracked = async (job: Job<T>, token?: string) => {
    const key = job.id ?? '';
    active.set(key, { job: job as Job, token });
    try {
      await handler(job);
    } finally {
      active.delete(key);
    }
  };
  const worker = new Worker<T>(queue, tracked, {
    connection: settings.connection,
    prefix: settings.prefix,
    concurrency,
    lockDuration: settings.lockSeconds * 1000,
    stalledInterval: Math.max(1000, (settings.lockSeconds * 1000) / 2),
    maxStalledCount: 3,
  });
  running.set(worker as Worker, active);
  return worker;
}

/**
 * Stops taking jobs and waits up to `timeoutMs` for the running ones
 * (`worker.close()` alone waits without limit). Jobs still running then are
 * handed back: moved to the queue's wait list, so another replica, or this
 * one's next start, takes them up at once instead of after their lock
 * expires. Handlers are reconcilers, safe to run again from the start.
 */
export async function closeWorker(worker: Worker, timeoutMs: number): Promise<void> {
  const active = running.get(worker) ?? new Map();
  // Stop fetching at once; `close()` would wait for running jobs whatever came next
  // (a later `close(true)` only returns the same pending promise).
  await settlesWithin(worker.pause(true), CLOSE_TIMEOUT_MS);
  const deadline = Date.now() + timeoutMs;
  while (active.size > 0 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
  if (active.size === 0) {
    await closeOrDrop(worker, false);
    // A fetch that was in flight may still have left a job active under this
    // worker's lock; on a loaded machine that is when it happens most.
    return handBackFetched(worker, timeoutMs);
  }
  // Each hand-back is bounded: with Redis down (its connection retries
  // commands without limit) the job is found stalled later instead.
  await Promise.all(
    [...active.values()].map(({ job, token }) =>
      settlesWithin(job.moveToWait(token), CLOSE_TIMEOUT_MS),
    ),
  );
  await closeOrDrop(worker, true);
  await handBackFetched(worker, timeoutMs);
}

/** How long a close may wait for Redis before its connections are dropped. */
const CLOSE_TIMEOUT_MS = 2000;

/**
 * `worker.close()` ends with `QUIT`, which a Redis that is down never
 * answers (BullMQ's connections queue commands until Redis is back): after
 * CLOSE_TIMEOUT_MS the worker's connections are dropped instead.
 */
async function closeOrDrop(worker: Worker, force: boolean): Promise<void> {
  if (await settlesWithin(worker.close(force), CLOSE_TIMEOUT_MS)) return;
  await settlesWithin(worker.disconnect(), 500);
}

/**
 * A job whose fetch was already on its way when the worker paused is active
 * in Redis under this worker's lock but never reached the handler, so the loop
 * above cannot see it; left alone it waits a whole lock period to be found
 * stalled. So does one whose lock expired during the close (handed back too). Its lock value is `<worker id>:<n>`, which tells it apart from
 * another replica's jobs. Bounded, so a Redis that is down cannot hold up the
 * shutdown.
 */
async function handBackFetched(worker: Worker, timeoutMs: number): Promise<void> {
  const queue = new Queue(worker.name, {
    connection: worker.opts.connection,
    prefix: worker.opts.prefix,
  });
  // Its failures are the sweep's, bounded and handled below.
  queue.on('error', () => undefined);
  const redis = new Redis({
    ...(worker.opts.connection as RedisOptions),
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  const sweep = (async () => {
    for (const job of await queue.getActive()) {
      const lock = await redis.get(queue.toKey(`${job.id}:lock`));
      if (lock?.startsWith(`${worker.id}:`)) await job.moveToWait(lock);
      // Active with no lock at all: held by nobody. A lock expires while this
      // worker closes when the machine is loaded and the lock short (its
      // renewal stopped with the worker, its hand-back above ran out of
      // time); BullMQ's stalled-job check would move it back, but only a
      // check period after the next worker starts. (Token "0": no lock to match.)
      else if (lock === null) await job.moveToWait('0').catch(() => undefined);
    }
  })();
  await settlesWithin(sweep, Math.max(CLOSE_TIMEOUT_MS, timeoutMs));
  redis.disconnect();
  await settlesWithin(queue.close(), 500);
}
