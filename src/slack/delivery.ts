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
  /** How long one replica may hold a session's messages (renewed while it works). */
  lockMs: number;
  /**
   * The Web API client's timeout for one call: a post not answered by then
   * may still have reached Slack, so another run waits that long (and a
   * little more) before it treats the post as lost.
   */
  callTimeoutMs: number;
  /**
   * The least time between two edits of a session's message when the second
   * would only move the student's place in line (`slack.linePositionEditSeconds`);
   * a change of state goes out at once. 0: every position goes out.
   */
  positionEditIntervalMs: number;
  /** How long a status job's queued mark lasts (notify-queue's). */
  queuedMarkMs: number;
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
  | 'stale'
  /** Another run's first post is not answered yet: this job comes back shortly. */
  | 'post-in-flight';

/** Slack Web API error codes (set by @slack/web-api on the errors it throws). */
const RATE_LIMITED = 'slack_webapi_rate_limited_error';
const PLATFORM_ERROR = 'slack_webapi_platform_error';
const REQUEST_ERROR = 'slack_webapi_request_error';

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

/**
 * A post's claim outlives the call's timeout by this much: the time between
 * the claim and the request leaving, and the answer's way back.
 */
const POST_HOLD_MARGIN_MS = 2000;

/** How often a job waiting for another run's post looks whether it was recorded. */
const IN_FLIGHT_RECHECK_MS = 500;

function digestOf(message: RenderedMessage): string {
  return createHash('sha256').update(JSON.stringify(message)).digest('base64url').slice(0, 22);
}

function slackErrorOf(err: unknown): { code?: string; retryAfter?: number; error?: string } {
  const e = err as { code?: string; retryAfter?: number; data?: { error?: string } };
  return { code: e?.code, retryAfter: e?.retryAfter, error: e?.data?.error };
}

/**
 * Slack certainly did not take the call: it answered 429 or an error, or no
 * connection was made. A timeout, a reset or a 5xx leave it open.
 */
function refusedBySlack(err: unknown): boolean {
  const { code } = slackErrorOf(err);
  if (code === RATE_LIMITED || code === PLATFORM_ERROR) return true;
  const cause = (err as { original?: { cause?: { code?: string } } })?.original?.cause;
  return code === REQUEST_ERROR && cause?.code === 'ECONNREFUSED';
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

  /** Posts the status message under the claim `postToken`, and records where it is. */
  async function postStatus(
    sessionId: string,
    userId: string,
    message: RenderedMessage,
    postToken: string,
    replace: boolean,
  ): Promise<DeliveryOutcome> {
    let posted: Awaited<ReturnType<typeof client.chat.postMessage>>;
    try {
      posted = await client.chat.postMessage({
        channel: userId,
        text: message.text,
        blocks: message.blocks,
        metadata: {
          event_type: STATUS_METADATA_TYPE,
          event_payload: { session_id: sessionId },
        },
      });
    } catch (err) {
      // Nothing was posted: the next attempt may post without looking first.
      // Otherwise the claim stays, and the next attempt looks in the DM.
      if (refusedBySlack(err)) await store.clearSlackPost(sessionId, postToken);
      throw err;
    }
    await store.recordSlackMessage(sessionId, posted.channel!, posted.ts!, { replace });
    return 'posted';
  }

  async function deliverStatus(
    job: NotifyJob & { kind: 'status' },
    state: SlackMessageState,
    userId: string,
  ): Promise<DeliveryOutcome> {
    // Every change counted so far is shown already (a run since this job was
    // queued rendered them): nothing to do. Compared with the counter, not
    // the job's own number, because later changes coalesced into this job.
    if (state.rendered >= state.version) return 'superseded';
    // Read the counter before the view: every change counted so far happened
    // before this read, so the view shows it.
    const version = state.version;
    const view = await deps.view(job.sessionId);
    if (!view) return 'gone';
    const message = deps.messages.status(view, { now: deps.now() });
    const digest = digestOf(message);
    if (digest === state.digest) {
      await store.markSlackDelivered(job.sessionId, version, digest, { state: view.state });
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
    if (!updated) {
      // The first post (or a new one after `lost`): claimed in Redis first,
      // so a second run of this job never posts it again.
      const postToken = randomUUID();
      const claim = await store.beginSlackPost(
        job.sessionId,
        postToken,
        deps.callTimeoutMs + POST_HOLD_MARGIN_MS,
        lost ? state.ts : undefined,
      );
      if (claim.kind === 'in-flight') return 'post-in-flight';
      if (claim.kind === 'posted') {
        // Another run posted and recorded it since this job read the state.
        const { channel, ts } = claim;
        await client.chat.update({ channel, ts, text: message.text, blocks: message.blocks });
      } else if (claim.lostSince !== undefined) {
        // An earlier post may have reached Slack without its answer reaching us.
        const found = await findPostedStatus(
          userId,
          job.sessionId,
          claim.lostSince,
          lost ? state.ts : undefined,
        );
        if (found) {
          await store.recordSlackMessage(job.sessionId, found.channel, found.ts, { replace: true });
          await client.chat.update({ ...found, text: message.text, blocks: message.blocks });
          log.info({ sessionId: job.sessionId }, 'adopted a status message posted before a crash');
        } else {
          outcome = await postStatus(job.sessionId, userId, message, postToken, lost);
        }
      } else {
        outcome = await postStatus(job.sessionId, userId, message, postToken, lost);
      }
    }
    await store.markSlackDelivered(job.sessionId, version, digest, {
      state: view.state,
      editedAt: deps.now(),
    });
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
    // Another run is at this session's messages: come back shortly.
    const comeBackShortly = async (delayMs = 100) => {
      await job.moveToDelayed(Date.now() + delayMs + Math.floor(Math.random() * 100), token);
      return new DelayedError();
    };
    if (!(await store.acquireSlackLock(data.sessionId, lockToken, deps.lockMs))) {
      throw await comeBackShortly();
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
      if (data.kind === 'status') {
        // Only the place in line could change, and the message was edited a
        // moment ago: come back when the interval is over (later position
        // changes wait in this job; a change of state queues its own).
        // Otherwise this run reads the latest state from here on: a change
        // after this point queues a job of its own (notify-queue's coalescing).
        const due = await store.startSlackStatusRun(
          data.sessionId,
          deps.now(),
          deps.positionEditIntervalMs,
          deps.queuedMarkMs,
        );
        if (due !== undefined) {
          log.debug({ sessionId: data.sessionId, due }, 'line position edit deferred');
          throw await comeBackShortly(due - deps.now());
        }
      }
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
      // Its lock lapsed while its post was out (a stalled replica): that run
      // records the message; this one edits it once it is recorded.
      if (outcome === 'post-in-flight') throw await comeBackShortly(IN_FLIGHT_RECHECK_MS);
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
