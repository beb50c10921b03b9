import { createHash } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { isValidSlackRequest } from '@slack/bolt';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/index.js';
import type { AckFirst } from './ack-first.js';

/** Slack's own window: a signed request older (or, here, newer) than this is refused. */
const MAX_SKEW_SECONDS = 5 * 60;
/** Slack's request bodies are small; anything larger is not Slack. */
const MAX_BODY_BYTES = 256 * 1024;

export interface SlackHttpGuardOptions {
  signingSecret: string;
  /** Bolt's HTTPReceiver.requestListener: it verifies again and dispatches. */
  boltListener: RequestListener;
  store: Pick<Store, 'markSeen'>;
  log: Logger;
  now?: () => number;
  /** Told of every request until it is answered (src/slack/ack-first.ts). */
  ackFirst?: AckFirst;
}

type BufferedRequest = IncomingMessage & { rawBody?: Buffer };

function refuse(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(message);
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * The HTTP door of `/slack/events`, in front of Bolt's receiver. Bolt checks
 * the signature and refuses old timestamps; this also refuses timestamps more
 * than 5 minutes in the future and a request whose exact signed bytes were
 * already received (a replay), across replicas through Redis. Only a
 * request that passes the signature check is remembered, so nobody can
 * fill Redis or block a real request with made-up signatures.
 */
export function slackHttpGuard(options: SlackHttpGuardOptions): RequestListener {
  const now = options.now ?? Date.now;
  const handle = async (req: BufferedRequest, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') return refuse(res, 405, 'POST only');
    const body = await readBody(req);
    if (body === undefined) return refuse(res, 413, 'request body too large');
    const text = body.toString('utf8');
    // Slack's SSL check carries no signature; Bolt answers it and strips anything else.
    if (!/^ssl_check=1(&|$)/.test(text)) {
      const signature = header(req, 'x-slack-signature');
      const timestamp = Number(header(req, 'x-slack-request-timestamp'));
      const nowSeconds = Math.floor(now() / 1000);
      if (!signature || !Number.isInteger(timestamp)) {
        return refuse(res, 401, 'missing Slack signature headers');
      }
      if (timestamp > nowSeconds + MAX_SKEW_SECONDS) {
        options.log.warn({ skewSeconds: timestamp - nowSeconds }, 'Slack request from the future');
        return refuse(res, 401, 'request timestamp is in the future');
      }
      const valid = isValidSlackRequest({
        signingSecret: options.signingSecret,
        body: text,
        headers: { 'x-slack-signature': signature, 'x-slack-request-timestamp': timestamp },
        nowMilliseconds: now(),
      });
      if (!valid) {
        options.log.warn('Slack request with a bad signature or stale timestamp');
        return refuse(res, 401, 'invalid signature or stale timestamp');
      }
      const digest = createHash('sha256').update(signature).digest('hex');
      if (!(await options.store.markSeen(`slack-signature:${digest}`, 2 * MAX_SKEW_SECONDS))) {
        options.log.warn('Slack request replayed');
        return refuse(res, 401, 'replayed request');
      }
    }
    req.rawBody = body;
    options.boltListener(req, res);
  };
  return (req, res) => {
    const answered = options.ackFirst?.arrived();
    if (answered) {
      res.once('finish', answered);
      res.once('close', answered);
    }
    handle(req, res).catch((err: unknown) => {
      options.log.error({ err: (err as Error).message }, 'Slack request failed');
      if (!res.headersSent) refuse(res, 500, 'internal error');
    });
  };
}
