import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { SlackStatusChange, Store } from '../store/index.js';

/**
 * The queue through which exactly one replica writes to a student's Slack DM,
 * whichever replica made the change. Every change to show is one job:
 *
 * - `status`: the session changed; the worker renders the session as it is
 *   *now* into the one status message. Each change gets the next number of
 *   the session's counter (Redis), and a job whose number the message already
 *   shows is skipped: so a burst of changes costs one Slack call, and only
 *   the latest state reaches Slack. A job that could only move the
 *   student's place in line waits until the message was last edited
 *   `slack.linePositionEditSeconds` ago (delivery.ts); a change of state
 *   does not wait behind it.
 * - `warning`: the session is about to expire (once per expiry time).
 * - `ended`: the session ended (once).
 *
 * Job ids are what the job is about, so the same change added twice (an
 * event and a front end's `sessionChanged` for the same start) is one job.
 * BullMQ refuses `:` in custom job ids, hence the dashes.
 */
export const NOTIFY_QUEUE = 'slack-notify';

export type NotifyJob =
  | { kind: 'status'; sessionId: string; version: number }
  | { kind: 'warning'; sessionId: string; expiresAt: number }
  | { kind: 'ended'; sessionId: string };

/** The custom backoff of notification jobs (see {@link notifyBackoffMs}). */
export const NOTIFY_BACKOFF = 'slack-notify';

/**
 * How long a queued status job keeps later changes from queuing their own:
 * past it (a job lost, or a long backlog) the next change queues another.
 */
export const STATUS_QUEUED_MARK_MS = 5 * 60_000;

export interface NotifyRetry {
  /** Attempts before a notification is given up (Slack down for that long). */
  attempts: number;
  /** First retry delay; it doubles up to {@link maxDelayMs}. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_NOTIFY_RETRY: NotifyRetry = {
  attempts: 200,
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
};

/** Exponential backoff with a ceiling and some jitter, so replicas do not retry in step. */
export function notifyBackoffMs(attemptsMade: number, retry: NotifyRetry): number {
  const exp = retry.baseDelayMs * 2 ** Math.max(0, attemptsMade - 1);
  const capped = Math.min(retry.maxDelayMs, exp);
  return Math.round(capped * (0.8 + Math.random() * 0.4));
}

export function notifyJobId(job: NotifyJob): string {
  switch (job.kind) {
    case 'status':
      return `status-${job.sessionId}-${job.version}`;
    case 'warning':
      return `warning-${job.sessionId}-${job.expiresAt}`;
    case 'ended':
      return `ended-${job.sessionId}`;
  }
}

export interface NotifyQueueSettings {
  connection: ConnectionOptions;
  prefix: string;
  retry: NotifyRetry;
  /** The queue's errors (its Redis connection's among them); BullMQ prints them to stderr when unheard. */
  onError?: (err: Error, what: string) => void;
}

/** The producer side: any replica adds; the queue makes sure one worker delivers. */
export class NotifyQueue {
  readonly queue: Queue<NotifyJob>;

  constructor(
    private readonly store: Store,
    private readonly settings: NotifyQueueSettings,
  ) {
    this.queue = new Queue<NotifyJob>(NOTIFY_QUEUE, {
      connection: settings.connection,
      prefix: settings.prefix,
    });
    const onError = settings.onError;
    if (onError) this.queue.on('error', (err) => onError(err, `queue ${NOTIFY_QUEUE}`));
  }

  /**
   * The session changed: its status message must come to show it. A change
   * of `position` only (the line moved) may wait for the line position's
   * edit interval; a change of `state` goes out at once.
   */
  async statusChanged(sessionId: string, change: SlackStatusChange = 'state'): Promise<void> {
    const { version, queue } = await this.store.bumpSlackVersion(
      sessionId,
      STATUS_QUEUED_MARK_MS,
      change,
    );
    // Coalesced: a status job that has not started yet renders the latest
    // state when it runs, so a burst of changes (the line moving at every
    // claim) queues one job, not one per change.
    if (!queue) return;
    try {
      await this.add({ kind: 'status', sessionId, version });
    } catch (err) {
      await this.store.clearSlackStatusQueued(sessionId).catch(() => undefined);
      throw err;
    }
  }

  async expiryWarning(sessionId: string, expiresAt: number): Promise<void> {
    await this.add({ kind: 'warning', sessionId, expiresAt });
  }

  async sessionEnded(sessionId: string): Promise<void> {
    await this.add({ kind: 'ended', sessionId });
  }

  async counts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('wait', 'active', 'delayed', 'failed', 'prioritized');
  }

  async close(): Promise<void> {
    await this.queue.close();
  }

  private async add(job: NotifyJob): Promise<void> {
    await this.queue.add(job.kind, job, {
      jobId: notifyJobId(job),
      attempts: this.settings.retry.attempts,
      backoff: { type: NOTIFY_BACKOFF },
      removeOnComplete: true,
      removeOnFail: { age: 24 * 3600, count: 1000 },
    } satisfies JobsOptions);
  }
}
