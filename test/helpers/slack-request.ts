import { createHmac, randomBytes } from 'node:crypto';

/**
 * Signed requests the way Slack sends them to a Bolt HTTP receiver:
 * `X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{raw body}")` and
 * `X-Slack-Request-Timestamp`. Slash commands are form-encoded,
 * interactivity is `payload=<json>` form-encoded, events are JSON.
 */

export const TEST_SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';
export const TEST_TEAM_ID = 'T0001';

export interface SignOptions {
  secret?: string;
  /** Unix seconds; default now. Tests of stale and future timestamps set it. */
  timestamp?: number;
  /** Replaces the computed signature (bad-signature tests). */
  signature?: string;
}

export interface SlackHttpResult {
  status: number;
  text: string;
  /** The body parsed as JSON when it is JSON. */
  json?: unknown;
  /** From sending the request to the end of the answer. */
  elapsedMs: number;
}

export function signSlackBody(body: string, options: SignOptions = {}): Record<string, string> {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const secret = options.secret ?? TEST_SIGNING_SECRET;
  const signature =
    options.signature ??
    `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  return {
    'x-slack-signature': signature,
    'x-slack-request-timestamp': String(timestamp),
  };
}

async function post(
  url: string,
  body: string,
  contentType: string,
  options: SignOptions & { headers?: Record<string, string> },
): Promise<SlackHttpResult> {
  const started = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': contentType, ...signSlackBody(body, options), ...options.headers },
    body,
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, elapsedMs: performance.now() - started };
}

export interface SlashCommandFields {
  text: string;
  userId: string;
  teamId?: string;
  enterpriseId?: string;
  command?: string;
  channelId?: string;
  userName?: string;
  /** Where Bolt's `respond()` posts; a fake Slack's `responseUrl()`. */
  responseUrl?: string;
  triggerId?: string;
}

export function slashCommandBody(fields: SlashCommandFields): string {
  const params: Record<string, string> = {
    token: 'deprecated-verification-token',
    team_id: fields.teamId ?? TEST_TEAM_ID,
    team_domain: 'fake',
    channel_id: fields.channelId ?? `D${fields.userId.slice(1)}`,
    channel_name: 'directmessage',
    user_id: fields.userId,
    user_name: fields.userName ?? fields.userId.toLowerCase(),
    command: fields.command ?? '/lab',
    text: fields.text,
    api_app_id: 'A0001',
    is_enterprise_install: fields.enterpriseId ? 'true' : 'false',
    response_url: fields.responseUrl ?? 'http://127.0.0.1:9/unused-response-url',
    trigger_id: fields.triggerId ?? `${Date.now()}.${randomBytes(6).toString('hex')}`,
  };
  if (fields.enterpriseId) {
    params.enterprise_id = fields.enterpriseId;
    params.enterprise_name = 'Fake Grid';
  }
  return new URLSearchParams(params).toString();
}

/** POSTs a signed slash command (form-encoded) to a Bolt receiver's `/slack/events`. */
export function postSlashCommand(
  url: string,
  fields: SlashCommandFields,
  options: SignOptions = {},
): Promise<SlackHttpResult> {
  return post(url, slashCommandBody(fields), 'application/x-www-form-urlencoded', options);
}

export interface BlockActionFields {
  userId: string;
  teamId?: string;
  enterpriseId?: string;
  actionId: string;
  value?: string;
  blockId?: string;
  /** The message the button is on (a DM status message: its `D…` channel and `ts`). */
  channelId?: string;
  messageTs?: string;
  /** `home` for App Home buttons. */
  container?: 'message' | 'home';
  responseUrl?: string;
  triggerId?: string;
  /** Slack's own id of the click (`action_ts`): the same for a redelivered click. */
  actionTs?: string;
}

export function blockActionPayload(fields: BlockActionFields): Record<string, unknown> {
  const teamId = fields.teamId ?? TEST_TEAM_ID;
  const actionTs = fields.actionTs ?? `${(Date.now() / 1000).toFixed(6)}`;
  const inHome = fields.container === 'home';
  return {
    type: 'block_actions',
    user: { id: fields.userId, username: fields.userId.toLowerCase(), team_id: teamId },
    api_app_id: 'A0001',
    token: 'deprecated-verification-token',
    team: { id: teamId, domain: 'fake' },
    enterprise: fields.enterpriseId ? { id: fields.enterpriseId, name: 'Fake Grid' } : null,
    is_enterprise_install: false,
    trigger_id: fields.triggerId ?? `${Date.now()}.${randomBytes(6).toString('hex')}`,
    container: inHome
      ? { type: 'view', view_id: 'V0001' }
      : {
          type: 'message',
          message_ts: fields.messageTs ?? '0.000000',
          channel_id: fields.channelId ?? `D${fields.userId.slice(1)}`,
          is_ephemeral: false,
        },
    ...(inHome
      ? { view: { id: 'V0001', type: 'home', blocks: [] } }
      : {
          channel: { id: fields.channelId ?? `D${fields.userId.slice(1)}`, name: 'directmessage' },
          message: { type: 'message', ts: fields.messageTs ?? '0.000000', text: '', blocks: [] },
          response_url: fields.responseUrl ?? 'http://127.0.0.1:9/unused-response-url',
        }),
    actions: [
      {
        type: 'button',
        action_id: fields.actionId,
        block_id: fields.blockId ?? 'actions',
        value: fields.value ?? '',
        text: { type: 'plain_text', text: fields.actionId },
        action_ts: actionTs,
      },
    ],
  };
}

/** POSTs a signed `block_actions` payload (`payload=<json>`, form-encoded). */
export function postBlockAction(
  url: string,
  fields: BlockActionFields,
  options: SignOptions = {},
): Promise<SlackHttpResult> {
  const body = new URLSearchParams({ payload: JSON.stringify(blockActionPayload(fields)) });
  return post(url, body.toString(), 'application/x-www-form-urlencoded', options);
}

export interface EventFields {
  teamId?: string;
  enterpriseId?: string;
  /** The inner event, e.g. `{ type: 'app_home_opened', user: 'U0001', tab: 'home' }`. */
  event: Record<string, unknown>;
  /** Slack's id for the delivery: the same on a retry. */
  eventId?: string;
}

export function eventEnvelope(fields: EventFields): Record<string, unknown> {
  const teamId = fields.teamId ?? TEST_TEAM_ID;
  return {
    token: 'deprecated-verification-token',
    team_id: teamId,
    enterprise_id: fields.enterpriseId,
    api_app_id: 'A0001',
    type: 'event_callback',
    event_id: fields.eventId ?? `Ev${randomBytes(6).toString('hex').toUpperCase()}`,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [
      {
        team_id: teamId,
        enterprise_id: fields.enterpriseId ?? null,
        user_id: 'UBOT0001',
        is_bot: true,
      },
    ],
    event: { event_ts: `${(Date.now() / 1000).toFixed(6)}`, ...fields.event },
  };
}

/** `app_home_opened` for a user, as Slack sends it when they open the Home tab. */
export function appHomeOpened(userId: string, teamId?: string): EventFields {
  return {
    teamId,
    event: { type: 'app_home_opened', user: userId, channel: `D${userId.slice(1)}`, tab: 'home' },
  };
}

/** POSTs a signed Events API callback (JSON); `retryNum` sets Slack's retry headers. */
export function postEvent(
  url: string,
  fields: EventFields,
  options: SignOptions & { retryNum?: number } = {},
): Promise<SlackHttpResult> {
  const headers: Record<string, string> = {};
  if (options.retryNum !== undefined) {
    headers['x-slack-retry-num'] = String(options.retryNum);
    headers['x-slack-retry-reason'] = 'http_timeout';
  }
  return post(url, JSON.stringify(eventEnvelope(fields)), 'application/json', {
    ...options,
    headers,
  });
}
