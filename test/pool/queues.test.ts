import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { closeWorker, JobQueues, QUEUE_NAMES, startWorker } from '../../src/pool/queues.js';
import { useRedis } from '../helpers/redis.js';

const redis = useRedis();

function settings() {
  const u = new URL(redis.url);
  return {
    connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null },
    prefix: 'test-jobs',
    concurrency: 1,
    // Long enough that nothing here is recovered by the stalled-job check.
    lockSeconds: 60,
  };
}

/** A maintenance worker whose first run waits for `finishFirst()`; `runs` holds each run's start. */
function maintenanceWorkerHoldingFirstRun(s: ReturnType<typeof settings>, prefix: string) {
  const runs: number[] = [];
  let startedFirst!: () => void;
  const firstStarted = new Promise<void>((r) => (startedFirst = r));
  let finishFirst!: () => void;
  const firstMayFinish = new Promise<void>((r) => (finishFirst = r));
  const worker = startWorker<{ task: string }>(
    QUEUE_NAMES.maintenance,
    { ...s, prefix },
    async () => {
      runs.push(Date.now());
      if (runs.length === 1) {
        startedFirst();
        await firstMayFinish;
      }
    },
  );
  return { runs, firstStarted, finishFirst, worker };
}

function queuesAt(s: ReturnType<typeof settings>, prefix: string): JobQueues {
  return new JobQueues({
    connection: s.connection,
    prefix,
    provisionAttempts: 1,
    maxProvisioning: 1,
  });
}

/** Waits (10 s at most) until the worker has started `count` runs. */
async function untilRuns(runs: number[], count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (runs.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

describe('closeWorker: shutdown hands running jobs back', () => {
  it('moves a job still running after the grace period, and one fetched but not yet started, back to the wait list', async () => {
    const s = settings();
    const queue = new Queue('q', { connection: s.connection, prefix: s.prefix });
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const worker = startWorker<{ n: number }>('q', s, async () => {
      started();
      await new Promise(() => undefined); // never finishes: a provision stuck on the cluster
    });
    try {
      await queue.add('job', { n: 1 }, { jobId: 'running' });
      await running;
      await queue.add('job', { n: 2 }, { jobId: 'fetched' });
      // What a fetch in flight at the moment of pausing leaves behind: active
      // under this worker's lock, unknown to the handler.
      const fetched = (await worker.getNextJob(`${worker.id}:in-flight`)) as Job | undefined;
      expect(fetched?.id).toBe('fetched');
      expect((await queue.getJobCounts('active')).active).toBe(2);

      const begun = Date.now();
      await closeWorker(worker, 200);
      expect(Date.now() - begun).toBeLessThan(5_000);

      const counts = await queue.getJobCounts('active', 'wait');
      expect(counts).toEqual({ active: 0, wait: 2 });
    } finally {
      await queue.close();
    }
  });

  it('hands back a job fetched but not yet started when no handler is running any more', async () => {
    const s = settings();
    const queue = new Queue('q3', { connection: s.connection, prefix: s.prefix });
    let started!: () => void;
    let finish!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const worker = startWorker<{ n: number }>('q3', s, async () => {
      started();
      await new Promise<void>((r) => (finish = r));
    });
    try {
      await queue.add('job', { n: 1 }, { jobId: 'done-in-time' });
      await running;
      await queue.add('job', { n: 2 }, { jobId: 'fetched' });
      const fetched = (await worker.getNextJob(`${worker.id}:in-flight`)) as Job | undefined;
      expect(fetched?.id).toBe('fetched');
      // The running job ends within the grace period: only the fetched one is left active.
      finish();
      await closeWorker(worker, 2_000);
      const counts = await queue.getJobCounts('active', 'wait', 'completed');
      expect(counts).toEqual({ active: 0, wait: 1, completed: 1 });
    } finally {
      await queue.close();
    }
  });

  it('hands back a running job whose lock expired before the shutdown reached it', async () => {
    const s = settings();
    const queue = new Queue('q4', { connection: s.connection, prefix: s.prefix });
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const worker = startWorker<{ n: number }>('q4', s, async () => {
      started();
      await new Promise(() => undefined);
    });
    try {
      await queue.add('job', { n: 1 }, { jobId: 'unlocked' });
      await running;
      // What a loaded machine does with a short lock (pool.jobLockSeconds): it
      // expires while the worker closes, before the job is handed back.
      const client = new Redis(redis.url);
      await client.del(queue.toKey('unlocked:lock'));
      client.disconnect();
      await closeWorker(worker, 200);
      expect(await queue.getJobCounts('active', 'wait')).toEqual({ active: 0, wait: 1 });
    } finally {
      await queue.close();
    }
  });

  it('leaves another worker’s running job alone', async () => {
    const s = settings();
    const queue = new Queue('q2', { connection: s.connection, prefix: s.prefix });
    const mine = startWorker('q2', s, async () => undefined);
    const other = startWorker('q2', s, async () => new Promise<void>(() => undefined));
    try {
      await mine.pause(true);
      await queue.add('job', {}, { jobId: 'theirs' });
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          void queue.getJobCounts('active').then((c) => {
            if (c.active === 1) {
              clearInterval(t);
              resolve();
            }
          });
        }, 20);
      });
      await closeWorker(mine, 100);
      expect((await queue.getJobCounts('active')).active).toBe(1);
    } finally {
      await closeWorker(other, 100);
      await queue.close();
    }
  });
});

describe('JobQueues.addMaintenance: requests coalesce without losing one', () => {
  it('runs once more after a run that a request arrived during, and once for requests that arrive while it waits', async () => {
    const s = settings();
    const prefix = `${s.prefix}-maint`;
    const queues = queuesAt(s, prefix);
    // Five requests before any worker: they coalesce into one waiting run.
    for (let i = 0; i < 5; i++) await queues.addMaintenance('replenish');
    expect((await queues.maintenance.getJobCounts('wait')).wait).toBe(1);

    const { runs, firstStarted, finishFirst, worker } = maintenanceWorkerHoldingFirstRun(s, prefix);
    try {
      await firstStarted;
      // The run has started (it may have read the line already): a student
      // joins now. Three requests while it runs are kept as one more run.
      for (let i = 0; i < 3; i++) await queues.addMaintenance('replenish');
      finishFirst();
      await untilRuns(runs, 2);
      // Nothing more is queued after the second run.
      await new Promise((r) => setTimeout(r, 500));
      expect(runs.length).toBe(2);
      expect(await queues.maintenance.getJobCounts('wait', 'active')).toEqual({
        wait: 0,
        active: 0,
      });
      // A later request, with none running, runs at once (no key left behind).
      await queues.addMaintenance('replenish');
      await untilRuns(runs, 3);
      expect(runs.length).toBe(3);
    } finally {
      await closeWorker(worker, 1000);
      await queues.close();
    }
  });
});

describe('addHostRepair: a repair asked for while one runs', () => {
  it('runs once more after the running repair (an extension written meanwhile is not lost)', async () => {
    const s = settings();
    const prefix = `${s.prefix}-repair`;
    const queues = queuesAt(s, prefix);
    const { runs, firstStarted, finishFirst, worker } = maintenanceWorkerHoldingFirstRun(s, prefix);
    try {
      await queues.addHostRepair(20);
      // The repair runs (it may have passed the env already): an extension's
      // expiry write fails now and asks for a repair of its own.
      await firstStarted;
      await queues.addHostRepair(20);
      finishFirst();
      await untilRuns(runs, 2);
      expect(runs.length).toBe(2);
    } finally {
      await closeWorker(worker, 1000);
      await queues.close();
    }
  });
});
