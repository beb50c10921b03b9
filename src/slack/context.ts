import { createHash, randomBytes } from 'node:crypto';
import type { webApi } from '@slack/bolt';
import type { Logger } from '../log/index.js';
import { LabvirtError, type SessionView, type StudentService } from '../sessions/types.js';
import type { Store } from '../store/index.js';
import type { AckFirst } from './ack-first.js';
import { parseStudentId } from './identity.js';
import type { Notifier } from './notifier.js';
import { errorMessage, keyFileComment, keyLinkMessage, type SlackMessage } from './messages.js';

type WebClient = webApi.WebClient;

/** What the Slack handlers need; built once by startSlack. */
export interface SlackDeps {
  service: StudentService;
  /** The delivery side: edits the student's DM status message (src/slack/notifier.ts). */
  notifier: Pick<Notifier, 'sessionChanged' | 'startedFromSlack'>;
  store: Pick<
    Store,
    'admitSignedRequest' | 'countRequest' | 'markSeen' | 'putKeyLink' | 'recentFailures'
  >;
  settings: SlackSettings;
  log: Logger;
  now: () => number;
  /** HTTP mode: work after an acknowledgement waits until no request waits for one. */
  ackFirst?: AckFirst;
}

export interface SlackSettings {
  /** The slash command, e.g. `/lab`. */
  command: string;
  commandsPerMinute: number;
  /** labvirt's API as browsers reach it; set: private keys go out as one-time links. */
  publicUrl?: string;
  keyLinkMinutes: number;
  operators: string[];
  operatorGroup?: string;
  /** Minutes one `extend` adds (sessions.extendMinutes), to turn `extend 30` into steps. */
  extendMinutes: number;
}

/** Tells the delivery side; a Slack or queue problem never fails the student's request. */
export async function sessionChanged(deps: SlackDeps, sessionId: string): Promise<void> {
  try {
    await deps.notifier.sessionChanged(sessionId);
  } catch (err) {
    deps.log.warn({ sessionId, err: (err as Error).message }, 'could not queue a Slack update');
  }
}

/**
 * True when the student has used up this minute's commands (all replicas
 * together). `counted`: the HTTP front door already counted this request
 * (src/slack/http.ts, with the replay mark); otherwise it is counted here.
 */
export async function overRateLimit(
  deps: SlackDeps,
  student: string,
  counted?: number,
): Promise<boolean> {
  const count = counted ?? (await deps.store.countRequest(`slack:${student}`, 60, deps.now()));
  return count > deps.settings.commandsPerMinute;
}

export function rateLimitMessage(deps: SlackDeps): SlackMessage {
  return errorMessage(
    `Slow down: at most ${deps.settings.commandsPerMinute} commands a minute. Try again in a moment.`,
  );
}

/** What to tell the student about an error; unexpected ones are logged with a reference. */
export function errorAnswer(deps: SlackDeps, err: unknown): SlackMessage {
  if (err instanceof LabvirtError) return errorMessage(err.message);
  const reference = randomBytes(4).toString('hex');
  deps.log.error({ reference, err: (err as Error).message }, 'Slack request failed');
  return errorMessage(`Something went wrong on labvirt's side (reference ${reference}).`);
}

/**
 * The session a command or button acts on: the one given (it must be the
 * student's: the service refuses others'), or the student's only live one.
 */
export async function targetSession(
  deps: SlackDeps,
  student: string,
  sessionId?: string,
): Promise<SessionView> {
  if (sessionId) return deps.service.status(sessionId, student);
  const live = await deps.service.list({ student });
  if (live.length === 0) {
    throw new LabvirtError(
      'SESSION_NOT_FOUND',
      `You have no lab running. \`${deps.settings.command} list\` shows what you can start.`,
    );
  }
  if (live.length > 1) {
    throw new LabvirtError(
      'INVALID_REQUEST',
      `You have ${live.length} labs running (${live.map((s) => s.id).join(', ')}): add the session id.`,
    );
  }
  return live[0]!;
}

/**
 * An idempotency key from what Slack sends: the same click or command,
 * delivered twice or to two replicas, yields the same key, so the service
 * returns the same session instead of making a second one.
 */
export function requestIdOf(...parts: (string | undefined | null)[]): string {
  return `slack-${createHash('sha256')
    .update(parts.map((p) => p ?? '').join('\u0000'))
    .digest('hex')
    .slice(0, 40)}`;
}

/**
 * A second click of the same button by the same student within a couple of
 * seconds (a double click, or the click delivered twice) is dropped.
 */
export async function isRepeatClick(deps: SlackDeps, ...parts: string[]): Promise<boolean> {
  return !(await deps.store.markSeen(`slack-click:${requestIdOf(...parts)}`, 3));
}

/** Opens (or finds) the student's DM with the app; `chat.update` needs this `D…` id. */
export async function dmChannelOf(client: WebClient, userId: string): Promise<string> {
  const opened = await client.conversations.open({ users: userId });
  const id = opened.channel?.id;
  if (!id) throw new Error('Slack did not open a DM channel');
  return id;
}

/**
 * Hands the session's private key to the student, never in a message text:
 * as a one-time download link on labvirt's API when `api.publicUrl` is set
 * (the key never reaches Slack's storage), else as a file in their DM.
 */
export async function deliverPrivateKey(
  deps: SlackDeps,
  client: WebClient,
  view: SessionView,
): Promise<void> {
  if (!view.privateKey) return;
  const user = parseStudentId(view.student);
  if (!user) return;
  if (deps.settings.publicUrl) {
    const token = randomBytes(24).toString('base64url');
    await deps.store.putKeyLink(token, view.privateKey, deps.settings.keyLinkMinutes * 60);
    const url = new URL(`keys/${token}`, withSlash(deps.settings.publicUrl)).toString();
    const message = keyLinkMessage(view, url, deps.settings.keyLinkMinutes);
    // Posting to a user id lands in the app's DM with them: one call.
    await client.chat.postMessage({
      channel: user.userId,
      text: message.text,
      blocks: message.blocks,
    });
    return;
  }
  await client.filesUploadV2({
    // Sharing a file takes a conversation id: the DM's `D…` id.
    channel_id: await dmChannelOf(client, user.userId),
    file: Buffer.from(view.privateKey, 'utf8'),
    // The name the connect command uses (src/sessions/connection.ts).
    filename: `labvirt-${view.id}.key`,
    title: `Private key for session ${view.id}`,
    initial_comment: keyFileComment(view),
  });
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/** Starts a session for a Slack request and does what follows: the DM, the key. */
export async function startFromSlack(
  deps: SlackDeps,
  client: WebClient,
  input: { student: string; labId: string; requestId?: string },
): Promise<SessionView> {
  const view = await deps.service.start(input);
  const user = parseStudentId(view.student);
  try {
    // Recorded by us, the creator: only sessions started from Slack are DMed.
    if (user) await deps.notifier.startedFromSlack(view.id, user.userId);
  } catch (err) {
    deps.log.error(
      { sessionId: view.id, err: (err as Error).message },
      'could not record where the Slack DMs of a session go',
    );
  }
  if (view.privateKey) {
    try {
      await deliverPrivateKey(deps, client, view);
    } catch (err) {
      // The key exists only in this answer: say so plainly, without the key.
      deps.log.error(
        { sessionId: view.id, err: (err as Error).message },
        'could not deliver the private key to Slack',
      );
      throw new LabvirtError(
        'UNAVAILABLE',
        `Your lab started (session ${view.id}) but Slack did not take its private key. ` +
          `Stop it, register your own key with \`${deps.settings.command} key <public key>\`, and start again.`,
      );
    }
  }
  return view;
}

// ---- operators ---------------------------------------------------------------

const GROUP_CACHE_MS = 60_000;
const groupCache = new WeakMap<SlackDeps, { at: number; members: Set<string> }>();

/** Operators are the configured user ids and the members of the configured user group. */
export async function isOperator(
  deps: SlackDeps,
  client: WebClient,
  userId: string,
): Promise<boolean> {
  if (deps.settings.operators.includes(userId)) return true;
  const group = deps.settings.operatorGroup;
  if (!group) return false;
  const cached = groupCache.get(deps);
  if (cached && deps.now() - cached.at < GROUP_CACHE_MS) return cached.members.has(userId);
  try {
    const answer = await client.usergroups.users.list({ usergroup: group });
    const members = new Set(answer.users ?? []);
    groupCache.set(deps, { at: deps.now(), members });
    return members.has(userId);
  } catch (err) {
    deps.log.warn({ err: (err as Error).message }, 'could not read the operator user group');
    return cached?.members.has(userId) ?? false;
  }
}
