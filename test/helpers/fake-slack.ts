import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fake Slack Web API on 127.0.0.1 for tests and benches. Bolt's WebClient
 * reaches it through `clientOptions.slackApiUrl: fake.apiUrl`. It records
 * every call, keeps the messages it was asked to post so `chat.update` can be
 * checked the way Slack checks it (a `D…` channel id and an existing `ts`),
 * and can be told to misbehave: 429 with `Retry-After`, 5xx, or be down.
 */

export interface SlackCall {
  method: string;
  /** Form or JSON arguments; values that are JSON (blocks, view, files…) are parsed. */
  args: Record<string, unknown>;
  /** The bearer token sent, if any. */
  token?: string;
  /** Date.now() when the call arrived. */
  at: number;
  /** What the fake answered: 200, 429 or a 5xx status; 0 when the caller was gone before the answer. */
  status: number;
}

export interface SlackMessage {
  channel: string;
  ts: string;
  text?: string;
  blocks?: unknown[];
  /** The message metadata chat.postMessage sent (`event_type`, `event_payload`). */
  metadata?: { event_type?: string; event_payload?: Record<string, unknown> };
  /** Every version of the message, the first being what chat.postMessage sent. */
  versions: Array<{ text?: string; blocks?: unknown[]; at: number }>;
}

export interface ResponseUrlPost {
  id: string;
  body: Record<string, unknown>;
  at: number;
}

export interface UploadedFile {
  id: string;
  filename: string;
  length: number;
  content?: string;
  /** Set by files.completeUploadExternal. */
  channel?: string;
  title?: string;
  initialComment?: string;
}

export type FailureMode = { status: 429; retryAfterSeconds: number } | { status: 500 | 502 | 503 };

export type DownMode = 'reset' | 'refused';

export interface FakeSlackOptions {
  teamId?: string;
  botUserId?: string;
  botId?: string;
}

export interface FakeSlack {
  /** Base URL for `clientOptions.slackApiUrl` (ends with `/api/`). */
  readonly apiUrl: string;
  readonly origin: string;
  readonly calls: readonly SlackCall[];
  readonly teamId: string;
  readonly botUserId: string;
  readonly botId: string;
  /** Successful calls of one method (answered 200 with ok: true or false). */
  callsOf(method: string): SlackCall[];
  /** Messages posted to a user (by user id or their DM channel id) or a channel, oldest first. */
  messagesTo(userOrChannel: string): SlackMessage[];
  /** Successful chat.update calls on one message, oldest first. */
  updatesOf(channel: string, ts: string): SlackCall[];
  /** Deletes a message, as a student can in their DM. */
  deleteMessage(channel: string, ts: string): void;
  /** A message as it stands now. */
  message(channel: string, ts: string): SlackMessage | undefined;
  /** The DM channel id (`D…`) the fake gives a user id. */
  dmChannelOf(userId: string): string;
  /** The next `count` calls of `method` answer with `failure` instead. */
  failNext(method: string, count: number, failure: FailureMode): void;
  /** Answers calls of `method` (or of every method: `*`) after `ms`; 0 to stop. */
  setLatency(method: string, ms: number): void;
  /**
   * Calls of `method` take effect at once but are answered only after `ms`
   * (0 to stop): a caller that dies meanwhile never learns what Slack did.
   */
  setAnswerDelay(method: string, ms: number): void;
  /** `reset`: every connection is destroyed; `refused`: the port stops listening. `false`: up again. */
  setDown(mode: DownMode | false): Promise<void>;
  /** A fresh `response_url` on this fake. */
  responseUrl(): string;
  /** Posts received on one response URL (or on all of them). */
  responsePosts(url?: string): ResponseUrlPost[];
  /** Later posts to this response URL answer 404, the way an expired one does. */
  expireResponseUrl(url: string): void;
  files(): UploadedFile[];
  setUsergroupMembers(usergroupId: string, userIds: string[]): void;
  /** What apps.connections.open hands back (a ws:// URL of a test's Socket Mode server). */
  setSocketModeUrl(url: string): void;
  /** Resolves once `predicate` holds over the recorded calls, or rejects after `timeoutMs`. */
  waitFor<T>(predicate: () => T | undefined | false, what: string, timeoutMs?: number): Promise<T>;
  /** Forgets every call, message, file and failure (keeps the port). */
  reset(): void;
  close(): Promise<void>;
}

const JSON_ARGS = new Set([
  'blocks',
  'attachments',
  'view',
  'files',
  'metadata',
  'users',
  'unfurl_links',
]);

function parseArgs(raw: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (JSON_ARGS.has(key) && (value.startsWith('[') || value.startsWith('{'))) {
      try {
        out[key] = JSON.parse(value);
        continue;
      } catch {
        // Not JSON after all: keep the string, as Slack would fail on it.
      }
    }
    out[key] = value;
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function decodeBody(req: IncomingMessage, body: Buffer): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('application/json')) {
    return body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
  }
  if (type.startsWith('multipart/form-data')) {
    // The platform's own multipart parser: a Request built from the raw bytes.
    const form = await new Request('http://127.0.0.1/', {
      method: 'POST',
      headers: { 'content-type': type },
      body,
    }).formData();
    const raw: Record<string, string> = {};
    for (const [key, value] of form.entries()) {
      raw[key] = typeof value === 'string' ? value : await value.text();
    }
    return parseArgs(raw);
  }
  return parseArgs(Object.fromEntries(new URLSearchParams(body.toString('utf8'))));
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain' : 'application/json; charset=utf-8',
    ...headers,
  });
  res.end(text);
}

export async function startFakeSlack(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const teamId = options.teamId ?? 'T0001';
  const botUserId = options.botUserId ?? 'UBOT0001';
  const botId = options.botId ?? 'BBOT0001';
  const calls: SlackCall[] = [];
  const messages = new Map<string, SlackMessage>();
  const failures = new Map<string, FailureMode[]>();
  const responsePosts: ResponseUrlPost[] = [];
  const expiredResponseUrls = new Set<string>();
  const uploads = new Map<string, UploadedFile>();
  const usergroups = new Map<string, string[]>();
  const sockets = new Set<Socket>();
  let socketModeUrl = '';
  const latency = new Map<string, number>();
  const answerDelay = new Map<string, number>();
  // Answers being held back (`answerDelay`): ended at close, so a held call's
  // timer does not outlive the fake in the worker the next test file uses.
  const held = new Set<() => void>();
  let down: DownMode | false = false;
  let tsCounter = 0;
  let idCounter = 0;

  const nextTs = () => {
    tsCounter += 1;
    return `${Math.floor(Date.now() / 1000)}.${String(tsCounter).padStart(6, '0')}`;
  };
  const nextId = (prefix: string) => `${prefix}${String(++idCounter).padStart(8, '0')}`;
  const dmChannelOf = (userId: string) => `D${userId.replace(/^[UW]/, '')}`;
  const channelOf = (channel: string) => (/^[UW]/.test(channel) ? dmChannelOf(channel) : channel);
  const key = (channel: string, ts: string) => `${channel}/${ts}`;

  let origin = '';

  function answerMethod(method: string, args: Record<string, unknown>): Record<string, unknown> {
    const str = (name: string) => (typeof args[name] === 'string' ? (args[name] as string) : '');
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://fake.slack.test/',
          team: 'Fake Team',
          team_id: teamId,
          user: 'labvirt',
          user_id: botUserId,
          bot_id: botId,
          is_enterprise_install: false,
        };
      case 'chat.postMessage': {
        if (!str('channel')) return { ok: false, error: 'channel_not_found' };
        if (!str('text') && !args.blocks) return { ok: false, error: 'no_text' };
        const channel = channelOf(str('channel'));
        const ts = nextTs();
        const text = str('text') || undefined;
        const blocks = args.blocks as unknown[] | undefined;
        const metadata =
          args.metadata && typeof args.metadata === 'object'
            ? (args.metadata as SlackMessage['metadata'])
            : undefined;
        messages.set(key(channel, ts), {
          channel,
          ts,
          text,
          blocks,
          metadata,
          versions: [{ text, blocks, at: Date.now() }],
        });
        return { ok: true, channel, ts, message: { type: 'message', text, blocks, ts } };
      }
      case 'chat.update': {
        // Slack edits only by conversation id: a user id here is refused.
        const message = messages.get(key(str('channel'), str('ts')));
        if (!message) {
          return {
            ok: false,
            error: /^[UW]/.test(str('channel')) ? 'channel_not_found' : 'message_not_found',
          };
        }
        const text = str('text') || undefined;
        const blocks = args.blocks as unknown[] | undefined;
        message.text = text;
        message.blocks = blocks;
        message.versions.push({ text, blocks, at: Date.now() });
        return { ok: true, channel: message.channel, ts: message.ts, text };
      }
      case 'chat.postEphemeral':
        if (!str('channel') || !str('user')) return { ok: false, error: 'channel_not_found' };
        return { ok: true, message_ts: nextTs() };
      case 'conversations.open': {
        const users = str('users').split(',').filter(Boolean);
        if (users.length !== 1) return { ok: false, error: 'users_list_not_supplied' };
        return { ok: true, channel: { id: dmChannelOf(users[0]!) } };
      }
      case 'conversations.history': {
        // Newest first, as Slack lists them; metadata only when asked for.
        const channel = str('channel');
        if (!/^[CDG]/.test(channel)) return { ok: false, error: 'channel_not_found' };
        const oldest = Number(str('oldest') || '0');
        const limit = Number(str('limit') || '100');
        const withMetadata = str('include_all_metadata') === 'true';
        const found = [...messages.values()]
          .filter((m) => m.channel === channel && Number(m.ts) >= oldest)
          .sort((a, b) => Number(b.ts) - Number(a.ts))
          .slice(0, limit)
          .map((m) => ({
            type: 'message',
            ts: m.ts,
            text: m.text,
            blocks: m.blocks,
            bot_id: botId,
            ...(withMetadata && m.metadata ? { metadata: m.metadata } : {}),
          }));
        return { ok: true, messages: found, has_more: false };
      }
      case 'views.publish':
        if (!str('user_id') || !args.view) return { ok: false, error: 'invalid_arguments' };
        return { ok: true, view: { id: nextId('V'), ...(args.view as object) } };
      case 'files.getUploadURLExternal': {
        const length = Number(str('length'));
        if (!str('filename') || !Number.isFinite(length) || length <= 0) {
          return { ok: false, error: 'invalid_arguments' };
        }
        const id = nextId('F');
        uploads.set(id, { id, filename: str('filename'), length });
        return { ok: true, upload_url: `${origin}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal': {
        const files = args.files as Array<{ id: string; title?: string }> | undefined;
        if (!Array.isArray(files) || files.length === 0) {
          return { ok: false, error: 'invalid_arguments' };
        }
        for (const f of files) {
          const upload = uploads.get(f.id);
          if (!upload || upload.content === undefined)
            return { ok: false, error: 'file_not_found' };
        }
        for (const f of files) {
          const upload = uploads.get(f.id)!;
          upload.title = f.title;
          upload.channel = str('channel_id') || undefined;
          upload.initialComment = str('initial_comment') || undefined;
        }
        return { ok: true, files: files.map((f) => ({ id: f.id, title: f.title })) };
      }
      case 'usergroups.users.list': {
        const members = usergroups.get(str('usergroup'));
        return members ? { ok: true, users: members } : { ok: false, error: 'no_such_subteam' };
      }
      case 'apps.connections.open':
        return socketModeUrl
          ? { ok: true, url: socketModeUrl }
          : { ok: false, error: 'invalid_auth' };
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (down === 'reset') {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url ?? '/', origin);
    const body = await readBody(req);

    if (url.pathname.startsWith('/upload/')) {
      const upload = uploads.get(url.pathname.slice('/upload/'.length));
      if (!upload) return send(res, 404, 'no such upload');
      const args = await decodeBody(req, body);
      upload.content = typeof args.body === 'string' ? args.body : body.toString('utf8');
      return send(res, 200, `OK - ${upload.content.length}`);
    }

    if (url.pathname.startsWith('/response/')) {
      const id = url.pathname.slice('/response/'.length);
      if (expiredResponseUrls.has(id)) return send(res, 404, 'expired_url');
      responsePosts.push({ id, body: await decodeBody(req, body), at: Date.now() });
      return send(res, 200, 'ok');
    }

    if (!url.pathname.startsWith('/api/')) return send(res, 404, 'not found');
    const method = url.pathname.slice('/api/'.length);
    const args = await decodeBody(req, body);
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined;
    const call: SlackCall = { method, args, token, at: Date.now(), status: 200 };
    calls.push(call);

    const delay = latency.get(method) ?? latency.get('*') ?? 0;
    if (delay > 0) {
      await new Promise((r) => setTimeout(r, delay));
      // The caller died or gave up while Slack was slow: model the worst case,
      // a call that never took effect (status 0), so tests see what is retried.
      if (req.socket.destroyed) {
        call.status = 0;
        return;
      }
    }

    const queued = failures.get(method);
    const failure = queued?.shift();
    if (failure) {
      call.status = failure.status;
      if (failure.status === 429) {
        return send(
          res,
          429,
          { ok: false, error: 'ratelimited' },
          { 'retry-after': String(failure.retryAfterSeconds) },
        );
      }
      return send(res, failure.status, 'upstream trouble');
    }
    if (!token && method !== 'apps.connections.open') {
      return send(res, 200, { ok: false, error: 'not_authed' });
    }
    const answer = answerMethod(method, args);
    const hold = answerDelay.get(method) ?? 0;
    if (hold > 0) {
      await new Promise<void>((r) => {
        const release = () => {
          clearTimeout(timer);
          held.delete(release);
          r();
        };
        const timer = setTimeout(release, hold);
        held.add(release);
      });
      if (req.socket.destroyed) {
        call.status = 0; // done in Slack, but the caller never heard
        return;
      }
    }
    return send(res, 200, answer);
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent)
        send(res, 400, { ok: false, error: 'invalid_form_data', detail: String(err) });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      for (const release of [...held]) release();
      server.close(() => resolve());
    });

  await listen(0);
  const port = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;

  const fake: FakeSlack = {
    apiUrl: `${origin}/api/`,
    origin,
    calls,
    teamId,
    botUserId,
    botId,
    callsOf: (method) => calls.filter((c) => c.method === method && c.status === 200),
    messagesTo(userOrChannel) {
      const channel = channelOf(userOrChannel);
      return [...messages.values()].filter((m) => m.channel === channel);
    },
    updatesOf: (channel, ts) =>
      calls.filter(
        (c) =>
          c.method === 'chat.update' &&
          c.status === 200 &&
          c.args.channel === channel &&
          c.args.ts === ts,
      ),
    message: (channel, ts) => messages.get(key(channel, ts)),
    deleteMessage(channel, ts) {
      messages.delete(key(channel, ts));
    },
    dmChannelOf,
    failNext(method, count, failure) {
      const queue = failures.get(method) ?? [];
      for (let i = 0; i < count; i++) queue.push(failure);
      failures.set(method, queue);
    },
    setLatency(method, ms) {
      if (ms > 0) latency.set(method, ms);
      else latency.delete(method);
    },
    setAnswerDelay(method, ms) {
      if (ms > 0) answerDelay.set(method, ms);
      else answerDelay.delete(method);
    },
    async setDown(mode) {
      const wasRefused = down === 'refused';
      down = mode;
      if (mode === 'refused' && !wasRefused) await stopListening();
      if (mode === 'reset') for (const s of sockets) s.destroy();
      if (mode !== 'refused' && wasRefused) await listen(port);
    },
    responseUrl: () => `${origin}/response/${randomBytes(8).toString('hex')}`,
    responsePosts(url) {
      if (!url) return [...responsePosts];
      const id = url.slice(url.lastIndexOf('/') + 1);
      return responsePosts.filter((p) => p.id === id);
    },
    expireResponseUrl(url) {
      expiredResponseUrls.add(url.slice(url.lastIndexOf('/') + 1));
    },
    files: () => [...uploads.values()],
    setUsergroupMembers(usergroupId, userIds) {
      usergroups.set(usergroupId, [...userIds]);
    },
    setSocketModeUrl(url) {
      socketModeUrl = url;
    },
    async waitFor(predicate, what, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const value = predicate();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`fake Slack: timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    reset() {
      calls.length = 0;
      messages.clear();
      failures.clear();
      responsePosts.length = 0;
      expiredResponseUrls.clear();
      uploads.clear();
      latency.clear();
      answerDelay.clear();
    },
    async close() {
      if (down !== 'refused') await stopListening();
    },
  };
  return fake;
}
