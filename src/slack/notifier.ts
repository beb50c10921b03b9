import { Worker, type ConnectionOptions } from 'bullmq';
import { webApi } from '@slack/bolt';
import type { EventBus, LabvirtEvent } from '../events/index.js';
import type { Logger } from '../log/index.js';
import { LabvirtError, type LabvirtService, type SessionView } from '../sessions/types.js';
import type { Store } from '../store/index.js';
import { createDeliveryHandler, type NotificationMessages } from './delivery.js';
import { parseStudentId } from './identity.js';
import { expiryWarningMessage, sessionEndedMessage, sessionStatusMessage } from './messages.js';
import {
  DEFAULT_NOTIFY_RETRY,
  NOTIFY_BACKOFF,
  NOTIFY_QUEUE,
  NotifyQueue,
  STATUS_QUEUED_MARK_MS,
  notifyBackoffMs,
  type NotifyRetry,
} from './notify-queue.js';

/** labvirt's own renderers (src/slack/messages.ts). */
export const DEFAULT_MESSAGES: NotificationMessages = {
  status: sessionStatusMessage,
  warning: expiryWarningMessage,
  ended: sessionEndedMessage,
};

/**
 * Slack answers in well under a second; a busy replica may take seconds to
 * read the answer. A post that times out costs two more calls (the DM is
 * searched for it), so the bound is generous.
 */
const DEFAULT_CALL_TIMEOUT_MS = 10_000;

/** `slack.linePositionEditSeconds`' default: a student in line sees their place move about 4 times a minute. */
const DEFAULT_LINE_POSITION_EDIT_MS = 15_000;

export interface NotifierOptions {
  /** BullMQ's Redis connection (`maxRetriesPerRequest: null`) and key prefix. */
  connection: ConnectionOptions;
  prefix: string;
  store: Store;
  service: Pick<LabvirtService, 'status'>;
  /** This replica's event bus: every change made here is enqueued from it. */
  events: EventBus;
  log: Logger;
  /** Its queue's and worker's errors (their Redis connections' among them); else logged as warnings. */
  onError?: (err: Error, what: string) => void;
  /**
   * Where and as whom to deliver. Without it this replica only enqueues
   * (another replica with a bot token delivers).
   */
  slack?: {
    botToken: string;
    /** The Web API base URL, `slack.apiUrl` (a fake Slack in tests). */
    apiUrl: string;
  };
  /** Slack calls per second across all replicas (Slack's limits are per workspace). */
  callsPerSecond?: number;
  /** Jobs delivered at once by this replica (different sessions). */
  concurrency?: number;
  retry?: Partial<NotifyRetry>;
  /** How long a crashed replica's hold on a session's messages lasts (renewed while it works). */
  lockMs?: number;
  /**
   * The timeout of one Slack call (default 10 s). A post not answered in
   * time may still have reached Slack: the DM is then searched for it, so
   * this must comfortably exceed Slack's answers on a busy replica.
   */
  callTimeoutMs?: number;
  /** Stalled-job detection: a crashed replica's job runs elsewhere after about this. */
  jobLockMs?: number;
  /**
   * The least time between two edits of a student's message that only move
   * their place in line (`slack.linePositionEditSeconds`, default 15 s);
   * changes of state go out at once. 0: every position change goes out.
   */
  linePositionEditMs?: number;
  messages?: NotificationMessages;
  now?: () => number;
}

export interface Notifier {
  /**
   * The session changed (a command or button of a front end): its DM status
   * message will come to show it. Never throws for Slack trouble; only when
   * Redis itself is unreachable.
   */
  sessionChanged(sessionId: string): Promise<void>;
  /**
   * The Slack front end started this session for Slack user `userId`: from
   * now on its DMs go to them. Only sessions marked so reach Slack, whatever
   * their student id looks like (an HTTP API caller may pick `T….U…`).
   */
  startedFromSlack(sessionId: string, userId: string): Promise<void>;
  /** Jobs waiting, running, delayed (retries) and failed for good. */
  counts(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/** `worker.close()` waits for running jobs without limit; a stuck Slack call must not hold a shutdown. */
async function closeBounded(worker: Worker, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)));
  const closed = worker.close().then(() => false);
  if (await Promise.race([closed, timedOut])) await worker.close(true);
  clearTimeout(timer);
}

/** The session a pool event is about, if it is about one. */
async function sessionOf(event: LabvirtEvent, store: Store): Promise<string | undefined> {
  if ('sessionId' in event) return event.sessionId;
  if (event.type === 'env.state' && (event.to === 'claimed' || event.to === 'preparing')) {
    return (await store.getEnv(event.envId))?.sessionId;
  }
  return undefined;
}

/**
 * Slack notifications through Redis. Every replica subscribes to its own
 * event bus and enqueues what happened there (its prepare worker, its expiry
 * sweep, its service calls); the queue makes sure one worker, in whichever
 * replica, delivers each notification, and a crashed replica's jobs are
 * picked up by another. Only students with a Slack identity get messages.
 */
export async function startNotifier(options: NotifierOptions): Promise<Notifier> {
  const { store, log } = options;
  const retry = { ...DEFAULT_NOTIFY_RETRY, ...options.retry };
  const lockMs = options.lockMs ?? 15_000;
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  const queue = new NotifyQueue(store, {
    connection: options.connection,
    prefix: options.prefix,
    retry,
    onError: options.onError,
  });

  const isSlackStudent = (student: string) => parseStudentId(student) !== undefined;

  /**
   * The line of a flavor moved (someone was served, or left): everyone still
   * in it has a new position to see, at the pace of the line position's edit
   * interval (a burst of claims moves a student many places between two
   * edits). Renders that did not change cost no Slack call (the digest check).
   */
  const lineMoved = async (flavor: string): Promise<void> => {
    for (const id of await store.waitingSessionIds(flavor)) {
      const session = await store.getSession(id);
      if (session && isSlackStudent(session.student)) await queue.statusChanged(id, 'position');
    }
  };

  const onEvent = async (event: LabvirtEvent): Promise<void> => {
    if (event.type === 'env.state' && event.to === 'claimed') await lineMoved(event.flavor);
    if (event.type === 'session.ended') {
      const flavor = (await store.getSession(event.sessionId))?.flavor;
      if (flavor) await lineMoved(flavor);
    }
    if ('student' in event && event.student !== undefined && !isSlackStudent(event.student)) return;
    switch (event.type) {
      case 'session.warning':
        await queue.expiryWarning(event.sessionId, Date.parse(event.expiresAt));
        return;
      case 'session.ended':
        await queue.statusChanged(event.sessionId);
        await queue.sessionEnded(event.sessionId);
        return;
      case 'check.completed':
        // Only a pass changes the status message (it shows "solved"); the
        // check's own answer goes back to whoever asked.
        if (event.passed) await queue.statusChanged(event.sessionId);
        return;
      default: {
        const sessionId = await sessionOf(event, store);
        if (!sessionId) return;
        if (event.type === 'env.state' || !('student' in event) || event.student === undefined) {
          const session = await store.getSession(sessionId);
          if (!session || !isSlackStudent(session.student)) return;
        }
        await queue.statusChanged(sessionId);
      }
    }
  };
  const unsubscribe = options.events.onAny(onEvent);

  let worker: Worker | undefined;
  if (options.slack) {
    const client = new webApi.WebClient(options.slack.botToken, {
      slackApiUrl: options.slack.apiUrl,
      // Retries and 429s are the queue's job: a Web API call never waits
      // inside the worker for minutes, it fails and the job is rescheduled.
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: callTimeoutMs,
      logLevel: webApi.LogLevel.ERROR,
    });
    const handler = createDeliveryHandler({
      store,
      client,
      view: async (sessionId): Promise<SessionView | undefined> => {
        try {
          return await options.service.status(sessionId);
        } catch (err) {
          if (err instanceof LabvirtError && err.code === 'SESSION_NOT_FOUND') return undefined;
          throw err;
        }
      },
      messages: options.messages ?? DEFAULT_MESSAGES,
      queue: queue.queue,
      log: log.child({ component: 'slack-notifier' }),
      now,
      lockMs,
      callTimeoutMs,
      positionEditIntervalMs: options.linePositionEditMs ?? DEFAULT_LINE_POSITION_EDIT_MS,
      queuedMarkMs: STATUS_QUEUED_MARK_MS,
    });
    const jobLockMs = options.jobLockMs ?? 30_000;
    worker = new Worker(NOTIFY_QUEUE, handler, {
      connection: options.connection,
      prefix: options.prefix,
      concurrency: options.concurrency ?? 8,
      limiter: { max: options.callsPerSecond ?? 10, duration: 1000 },
      lockDuration: jobLockMs,
      stalledInterval: Math.max(500, jobLockMs / 2),
      maxStalledCount: 5,
      settings: {
        backoffStrategy: (attemptsMade, type) =>
          type === NOTIFY_BACKOFF ? notifyBackoffMs(attemptsMade, retry) : 1000,
      },
    });
    worker.on('failed', (job, err) => {
      const final = job && job.attemptsMade >= (job.opts.attempts ?? 1);
      const line = { sessionId: job?.data.sessionId, kind: job?.data.kind, err: err.message };
      if (final) log.error(line, 'Slack notification given up');
      else log.debug(line, 'Slack notification will be retried');
    });
    worker.on('error', (err) =>
      options.onError
        ? options.onError(err, `worker ${NOTIFY_QUEUE}`)
        : log.warn({ err: err.message }, 'notification worker error'),
    );
  }

  return {
    async sessionChanged(sessionId) {
      const session = await store.getSession(sessionId);
      if (!session || !isSlackStudent(session.student)) return;
      await queue.statusChanged(sessionId);
    },
    async startedFromSlack(sessionId, userId) {
      await store.setSlackTarget(sessionId, userId);
      // Changes queued before the target was recorded were dropped: show them now.
      await queue.statusChanged(sessionId);
    },
    counts: () => queue.counts(),
    async close() {
      unsubscribe();
      if (worker) await closeBounded(worker, 10_000);
      await queue.close();
    },
  };
}
