import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { isValidSlackRequest } from '@slack/bolt';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/index.js';
import type { AckFirst } from './ack-first.js';
import { studentIdOf } from './identity.js';

/** Slack's own window: a signed request older (or, here, newer) than this is refused. */
const MAX_SKEW_SECONDS = 5 * 60;
/** Slack's request bodies are small; anything larger is not Slack. */
const MAX_BODY_BYTES = 256 * 1024;
/**
 * The only signature shape Slack sends. Bolt's check splits the header on
 * `=` and ignores a third part, so `v0=<hmac>=x` would pass it with a replay
 * mark of its own: anything but the exact shape is refused.
 */
const SIGNATURE = /^v0=[0-9a-f]{64}$/;
/** The window of the per-student command count (commands a minute). */
export const COMMAND_WINDOW_SECONDS = 60;

/**
 * What the front door hands to the command handlers through Bolt's context
 * (`customPropertiesExtractor`): the student's commands in the last minute,
 * this one included, counted in the same Redis round trip as the replay mark.
 */
export interface FrontDoorContext {
  labvirtCommandsThisMinute?: number;
}

export interface SlackHttpGuardOptions {
  signingSecret: string;
  /**
   * Bolt's HTTPReceiver.requestListener, with Bolt's own signature check
   * off: every request this passes on was verified here, on the very bytes
   * Bolt then parses.
   */
  boltListener: RequestListener;
  store: Pick<Store, 'admitSignedRequest'>;
  log: Logger;
  now?: () => number;
  /** Told of every request until it is answered (src/slack/ack-first.ts). */
  ackFirst?: AckFirst;
}

type BufferedRequest = IncomingMessage & { rawBody?: Buffer } & FrontDoorContext;

/** For Bolt's `customPropertiesExtractor`: what the front door learned about a request. */
export function frontDoorContext(req: IncomingMessage): FrontDoorContext {
  const count = (req as BufferedRequest).labvirtCommandsThisMinute;
  return count === undefined ? {} : { labvirtCommandsThisMinute: count };
}

/**
 * The student a slash command comes from (its form fields), so its rate
 * count goes with the replay mark; undefined for other requests (buttons,
 * events: JSON payloads) and for ids Slack would never send.
 */
function commandStudent(req: IncomingMessage, text: string): string | undefined {
  if (req.headers['content-type'] !== 'application/x-www-form-urlencoded') return undefined;
  if (text.startsWith('payload=')) return undefined; // a button or view: JSON inside
  const form = new URLSearchParams(text);
  if (!form.has('command') || form.has('payload')) return undefined;
  try {
    return studentIdOf({
      enterpriseId: form.get('enterprise_id'),
      teamId: form.get('team_id'),
      userId: form.get('user_id') ?? '',
    });
  } catch {
    return undefined;
  }
}

function refuse(res: ServerResponse, status: number, message: string, close = false): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(message);
}

/**
 * The request's body, or undefined past {@link MAX_BODY_BYTES}. Plain
 * `data`/`end` listeners rather than an async iterator: at a class's burst
 * of commands, every allocation on the way to the acknowledgement counts.
 */
function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    // A command's body comes in one chunk: no copy then.
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        // Read no further: the answer closes the connection.
        req.off('data', onData);
        req.pause();
        resolve(undefined);
        return;
      }
      if (!first) first = chunk;
      else (more ??= [first]).push(chunk);
    };
    req.on('data', onData);
    req.once('error', reject);
    req.once('end', () => {
      if (size > MAX_BODY_BYTES) return;
      resolve(more ? Buffer.concat(more, size) : (first ?? Buffer.alloc(0)));
    });
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * The HTTP door of `/slack/events`, in front of Bolt's receiver (whose own
 * signature check is off: this is the one). It checks the signature and
 * refuses timestamps more than 5 minutes old or in the future, and a request
 * whose exact signed bytes were already received (a replay), across replicas
 * through Redis; a slash command is counted against its student's rate
 * limit in the same round trip. Only a request that passes the signature
 * check is remembered, so nobody can fill Redis or block a real request with
 * made-up signatures. Slack's SSL check (unsigned) is answered here and
 * never reaches Bolt.
 */
export function slackHttpGuard(options: SlackHttpGuardOptions): RequestListener {
  const now = options.now ?? Date.now;
  const handle = async (req: BufferedRequest, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') return refuse(res, 405, 'POST only');
    const body = await readBody(req);
    if (body === undefined) return refuse(res, 413, 'request body too large', true);
    const text = body.toString('utf8');
    // Slack's SSL check carries no signature and wants an empty 200; whatever
    // else such a body carries is never dispatched.
    if (/^ssl_check=1(&|$)/.test(text)) {
      res.writeHead(200);
      res.end();
      return;
    }
    const signature = header(req, 'x-slack-signature');
    const timestamp = Number(header(req, 'x-slack-request-timestamp'));
    const nowMs = now();
    const nowSeconds = Math.floor(nowMs / 1000);
    if (!signature || !Number.isInteger(timestamp)) {
      return refuse(res, 401, 'missing Slack signature headers');
    }
    if (timestamp > nowSeconds + MAX_SKEW_SECONDS) {
      options.log.warn({ skewSeconds: timestamp - nowSeconds }, 'Slack request from the future');
      return refuse(res, 401, 'request timestamp is in the future');
    }
    const valid =
      SIGNATURE.test(signature) &&
      isValidSlackRequest({
        signingSecret: options.signingSecret,
        body: text,
        headers: { 'x-slack-signature': signature, 'x-slack-request-timestamp': timestamp },
        nowMilliseconds: nowMs,
      });
    if (!valid) {
      options.log.warn('Slack request with a bad signature or stale timestamp');
      return refuse(res, 401, 'invalid signature or stale timestamp');
    }
    const student = commandStudent(req, text);
    // The signature is an HMAC of the timestamp and the body: the replay key.
    const admitted = await options.store.admitSignedRequest(
      { what: `slack-signature:${signature.slice(3)}`, ttlSeconds: 2 * MAX_SKEW_SECONDS },
      student
        ? { what: `slack:${student}`, windowSeconds: COMMAND_WINDOW_SECONDS, now: nowMs }
        : undefined,
    );
    if (!admitted.fresh) {
      options.log.warn('Slack request replayed');
      return refuse(res, 401, 'replayed request');
    }
    if (student) req.labvirtCommandsThisMinute = admitted.count;
    req.rawBody = body;
    options.boltListener(req, res);
  };
  return (req, res) => {
    const answered = options.ackFirst?.arrived();
    // 'close' follows every answer (after 'finish') and a dropped connection.
    if (answered) res.once('close', answered);
    handle(req, res).catch((err: unknown) => {
      options.log.error({ err: (err as Error).message }, 'Slack request failed');
      if (!res.headersSent) refuse(res, 500, 'internal error');
    });
  };
}
