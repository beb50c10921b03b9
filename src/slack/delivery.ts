import { createHash, randomUUID } from 'node:crypto';
import { DelayedError, UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import type { types as slackTypes, webApi } from '@slack/bolt';
import type { Logger } from '../log/index.js';
import type { SessionView } from '../sessions/types.js';
import type { SlackMessageState, Store } from '../store/index.js';
import type { NotifyJob } from './notify-queue.js';

/** A message as the renderers make it: fallback text plus Block Kit blocks. */
export interface RenderedMessage {
  text: string;
  blocks: (slackTypes.KnownBlock | slackTypes.Block)[];
}

/** The renderers the notifier uses (front's `src/slack/messages.ts`); pure functions. */
export interface NotificationMessages {
  status(view: SessionView, opts: { now: number }): RenderedMessage;
  warning(view: SessionView, opts: { now: number }): RenderedMessage;
  ended(view: SessionView, opts: { now: number }): RenderedMessage;
}

export interface DeliveryDeps {
  store: Store;
  client: webApi.WebClient;
  /** The session as the student may see it now; undefined when it is gone. */
  view(sessionId: string): Promise<SessionView | undefined>;
  messages: NotificationMessages;
  /** The notification queue, paused as a whole when Slack answers 429. */
  queue: Queue<NotifyJob>;
  log: Logger;
  now(): number;
  /** How long one replica may hold a session's messages (longer than a Slack call). */
  lockMs: number;
}

/** What a job did: for logs and tests. */
export type DeliveryOutcome =
  | 'posted'
  | 'updated'
  | 'superseded'
  | 'unchanged'
  | 'not-slack'
  | 'gone'
  | 'already-sent'
  | 'stale';

/** Slack Web API error codes (set by @slack/web-api on the errors it throws). */
const RATE_LIMITED = 'slack_webapi_rate_limited_error';
const PLATFORM_ERROR = 'slack_webapi_platform_error';

/** Platform errors that mean the stored message cannot be edited any more. */
const MESSAGE_LOST = new Set(['message_not_found', 'channel_not_found', 'cant_update_message']);

/**
 * Slack message metadata on every status message: the `event_type` and the
 * payload's session id let a retry find a message whose post Slack accepted
 * but whose answer never came back (a replica died in between).
 */
export const STATUS_METADATA_TYPE = 'labvirt_session';

/** How far back, before the post began, a lost status message is looked for (clock skew). */
const HISTORY_SLACK_SECONDS = 600;

function digestOf(message: RenderedMessage): string {
  return createHash('sha256').update(JSON.stringify(message)).digest('base64url').slice(0, 22);
}

function slackErrorOf(err: unknown): { code?: string; retryAfter?: number; error?: string } {
  const e = err as { code?: string; retryAfter?: number; data?: { error?: string } };
  return { code: e?.code, retryAfter: e?.retryAfter, error: e?.data?.error };
}

/**
 * The worker side of the notification queue: one job at a time per session
 * (a Redis lock held across replicas), Slack's answers mapped onto BullMQ:
 * 429 pauses the whole queue for `Retry-After` and puts the job back without
 * counting an attempt; a 5xx or no answer fails the attempt (retried with
 * backoff); an error Slack will repeat forever (`invalid_auth`, …) fails the
 * job for good, logged.
 */
export function createDeliveryHandler(deps: DeliveryDeps) {
  const { store, client, log } = deps;

  const postTo = async (channel: string, message: RenderedMessage) =>
    client.chat.postMessage({ channel, text: message.text, blocks: message.blocks });

  /**
   * A status message of the session already in the student's DM: one an
   * earlier attempt posted without living to record it (found by its
   * metadata), other than `except` (a recorded message that is gone).
   */
  async function findPostedStatus(
    userId: string,
    sessionId: string,
    since: number,
    except: string | undefined,
  ): Promise<{ channel: string; ts: string } | undefined> {
    const opened = await client.conversations.open({ users: userId });
    const channel = opened.channel?.id;
    if (!channel) return undefined;
    const history = await client.conversations.history({
      channel,
      include_all_metadata: true,
      oldest: String(Math.floor(since / 1000) - HISTORY_SLACK_SECONDS),
      limit: 100,
    });
    // Newest first: the latest attempt is the one to keep editing.
    const found = (history.messages ?? []).find(
      (m) =>
        m.ts !== undefined &&
        m.ts !== except &&
        m.metadata?.event_type === STATUS_METADATA_TYPE &&
        (m.metadata.event_payload as Record<string, unknown> | undefined)?.session_id === sessionId,
    );
    return found?.ts ? { channel, ts: found.ts } : undefined;
  }

  async function deliverStatus(
    job: NotifyJob & { kind: 'status' },
    state: SlackMessageState,
    userId: string,
  ): Promise<DeliveryOutcome> {
    if (state.rendered >= job.version) return 'superseded';
    // Read the counter before the view: every change counted so far happened
    // before this read, so the view shows it.
    const version = state.version;
    const view = await deps.view(job.sessionId);
    if (!view) return 'gone';
    const message = deps.messages.status(view, { now: deps.now() });
    const digest = digestOf(message);
    if (digest === state.digest) {
      await store.markSlackDelivered(job.sessionId, version, digest);
      return 'unchanged';
    }
    let outcome: DeliveryOutcome = 'updated';
    let updated = false;
    let lost = false;
    if (state.channel && state.ts) {
      try {
        await client.chat.update({
          channel: state.channel,
          ts: state.ts,
          text: message.text,
          blocks: message.blocks,
        });
        updated = true;
      } catch (err) {
        const e = slackErrorOf(err);
        if (e.code !== PLATFORM_ERROR || !MESSAGE_LOST.has(e.error ?? '')) throw err;
        // The student deleted the message (or the DM went away): start a new one.
        lost = true;
        log.info({ sessionId: job.sessionId, error: e.error }, 'status message lost; posting anew');
      }
    }
    if (!updated && state.postingSince !== undefined) {
      // An earlier post may have reached Slack without its answer reaching us.
      const found = await findPostedStatus(userId, job.sessionId, state.postingSince, state.ts);
      if (found) {
        await store.recordSlackMessage(job.sessionId, found.channel, found.ts, { replace: true });
        await client.chat.update({ ...found, text: message.text, blocks: message.blocks });
        log.info({ sessionId: job.sessionId }, 'adopted a status message posted before a crash');
        updated = true;
      }
    }
    if (!updated) {
      await store.markSlackPosting(job.sessionId, deps.now());
      const posted = await client.chat.postMessage({
        channel: userId,
        text: message.text,
        blocks: message.blocks,
        metadata: {
          event_type: STATUS_METADATA_TYPE,
          event_payload: { session_id: job.sessionId },
        },
      });
      await store.recordSlackMessage(job.sessionId, posted.channel!, posted.ts!, {
        replace: lost,
      });
      outcome = 'posted';
    }
    await store.markSlackDelivered(job.sessionId, version, digest);
    return outcome;
  }

  async function deliverOnce(
    job: NotifyJob & { kind: 'warning' | 'ended' },
    state: SlackMessageState,
    userId: string,
  ): Promise<DeliveryOutcome> {
    if (job.kind === 'warning' && state.warnedFor === job.expiresAt) return 'already-sent';
    if (job.kind === 'ended' && state.endedSent) return 'already-sent';
    const view = await deps.view(job.sessionId);
    if (!view) return 'gone';
    if (job.kind === 'warning') {
      // Extended (or ended) since the warning was queued: nothing to warn about.
      const current = view.expiresAt ? Date.parse(view.expiresAt) : undefined;
      if (view.state !== 'active' || current !== job.expiresAt) return 'stale';
    }
    const render = job.kind === 'warning' ? deps.messages.warning : deps.messages.ended;
    await postTo(state.channel ?? userId, render(view, { now: deps.now() }));
    await store.markSlackSent(
      job.sessionId,
      job.kind === 'warning' ? { warnedFor: job.expiresAt } : { endedSent: true },
    );
    return 'posted';
  }

  return async function deliver(job: Job<NotifyJob>, token?: string): Promise<DeliveryOutcome> {
    const data = job.data;
    const lockToken = randomUUID();
    if (!(await store.acquireSlackLock(data.sessionId, lockToken, deps.lockMs))) {
      // Another replica is editing this session's messages: come back shortly.
      await job.moveToDelayed(Date.now() + 100 + Math.floor(Math.random() * 100), token);
      throw new DelayedError();
    }
    // Held while the job runs (a slow Redis or Slack must not let a second
    // writer in); a crashed replica stops renewing, so it lapses after lockMs.
    const renew = setInterval(
      () => {
        store.extendSlackLock(data.sessionId, lockToken, deps.lockMs).catch(() => undefined);
      },
      Math.max(100, Math.floor(deps.lockMs / 3)),
    );
    try {
      const record = await store.getSession(data.sessionId);
      if (!record) return 'gone';
      const state = await store.slackMessageState(data.sessionId);
      // Only a session the Slack front end started has a target; a student id
      // that merely looks like a Slack one (an API caller's) gets nothing.
      if (!state.target) return 'not-slack';
      const outcome =
        data.kind === 'status'
          ? await deliverStatus(data, state, state.target)
          : await deliverOnce(data, state, state.target);
      log.debug({ sessionId: data.sessionId, kind: data.kind, outcome }, 'slack notification');
      return outcome;
    } catch (err) {
      const e = slackErrorOf(err);
      if (e.code === RATE_LIMITED) {
        const waitMs = Math.max(1, e.retryAfter ?? 1) * 1000;
        log.info({ sessionId: data.sessionId, waitMs }, 'Slack rate limit; notifications paused');
        await deps.queue.rateLimit(waitMs);
        throw Worker.RateLimitError();
      }
      if (e.code === PLATFORM_ERROR) {
        log.error(
          { sessionId: data.sessionId, kind: data.kind, error: e.error },
          'Slack refused a notification',
        );
        throw new UnrecoverableError(`Slack refused: ${e.error ?? 'unknown error'}`);
      }
      throw err;
    } finally {
      clearInterval(renew);
      await store.releaseSlackLock(data.sessionId, lockToken).catch(() => undefined);
    }
  };
}
