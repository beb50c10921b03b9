import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_NOTIFY_RETRY,
  NotifyQueue,
  STATUS_QUEUED_MARK_MS,
} from '../../src/slack/notify-queue.js';
import { Store } from '../../src/store/index.js';
import { useRedis } from '../helpers/redis.js';

const redis = useRedis();

/**
 * Status changes queue at most one waiting job per session: a burst (the
 * line moving at every claim of a 200-student class) must not queue a job
 * per change, each counted by the delivery's rate limit.
 */
describe('Slack status jobs are coalesced when queued', () => {
  const opened: NotifyQueue[] = [];
  const queueOn = (store: Store) => {
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const q = new NotifyQueue(store, {
      connection,
      prefix: 'lv-jobs',
      retry: DEFAULT_NOTIFY_RETRY,
    });
    opened.push(q);
    return q;
  };
  afterEach(async () => {
    for (const q of opened.splice(0)) {
      await q.close();
      await q.queue.disconnect();
    }
  });

  it('queues one job for a burst of changes, and counts every change', async () => {
    const store = new Store(redis.client, 'lv');
    // Two replicas queuing for the same session at once.
    const [a, b] = [queueOn(store), queueOn(new Store(redis.connect(), 'lv'))];
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).statusChanged('s-burst')),
    );
    expect((await a.counts()).wait).toBe(1);
    // The one job renders whatever is latest when it runs: all 60 changes are counted.
    expect((await store.slackMessageState('s-burst')).version).toBe(60);
  });

  it('queues again once the waiting job has started, and after the mark lapses', async () => {
    const store = new Store(redis.client, 'lv');
    const q = queueOn(store);
    await q.statusChanged('s-run');
    await q.statusChanged('s-run');
    expect((await q.counts()).wait).toBe(1);
    // What a delivery run does first: changes after this point need a job of their own.
    await store.clearSlackStatusQueued('s-run');
    await q.statusChanged('s-run');
    await q.statusChanged('s-run');
    expect((await q.counts()).wait).toBe(2);
    // A job lost between the mark and the queue: the mark lapses, the next change queues.
    const key = '{lv}:slack-status-queued:s-run';
    expect(await redis.client.pttl(key)).toBeGreaterThan(STATUS_QUEUED_MARK_MS - 60_000);
    await redis.client.pexpire(key, 1);
    await new Promise((r) => setTimeout(r, 20));
    await q.statusChanged('s-run');
    expect((await q.counts()).wait).toBe(3);
  });
});
