import { ApiException } from './client-node.js';

/**
 * Network failures on the way to the API server that say nothing about the
 * request itself: the connection could not be made in time, was refused, or
 * broke. undici reports them as `TypeError: fetch failed` with the reason in
 * `cause` (an HTTP answer, even a 5xx, is an ApiException and never lands here).
 */

/** The request never reached the server: repeating it is safe for any call. */
const NOT_SENT = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** The connection broke; the server may or may not have acted on the request. */
const BROKEN = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ETIMEDOUT']);

function causes(err: unknown): { code?: string; message?: string }[] {
  const out: { code?: string; message?: string }[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur && typeof cur === 'object' && depth < 5; depth++) {
    out.push(cur as { code?: string; message?: string });
    cur = (cur as { cause?: unknown }).cause;
  }
  return out;
}

/** `request` is whether a repeat may repeat an effect the server already had. */
export function isTransientNetworkError(err: unknown, request: 'any' | 'idempotent'): boolean {
  const codes = causes(err)
    .slice(1)
    .map((c) => c.code)
    .filter((c): c is string => typeof c === 'string');
  if (codes.some((c) => NOT_SENT.has(c))) return true;
  return request === 'idempotent' && codes.some((c) => BROKEN.has(c));
}

/**
 * "fetch failed" alone tells an operator nothing: the causes are appended,
 * e.g. `fetch failed (UND_ERR_CONNECT_TIMEOUT: Connect Timeout Error …)`.
 */
export function networkErrorMessage(err: Error): string {
  const why = causes(err)
    .slice(1)
    .map((c) => [c.code, c.message].filter(Boolean).join(': '))
    .filter(Boolean);
  return why.length ? `${err.message} (${why.join(' <- ')})` : err.message;
}

export interface TransientRetry {
  /** Tries in all, the first included. */
  attempts: number;
  /** Pause before the first repeat; doubled for each further one, with jitter. */
  firstPauseMs: number;
}

export const DEFAULT_TRANSIENT_RETRY: TransientRetry = { attempts: 4, firstPauseMs: 250 };

/**
 * Answers that say the API server cannot serve now, whatever was asked: it
 * is throttling (429: priority and fairness, or its in-flight limit, turned
 * the request away before acting on it, so any request may be made again,
 * after the `Retry-After` it names, as client-go does), restarting, or
 * behind a load balancer that found no healthy one (502–504: an idempotent
 * request may be made again).
 */
export const CANNOT_SERVE_STATUS: ReadonlySet<number> = new Set([429, 502, 503, 504]);
const THROTTLED = 429;

/** The longest `Retry-After` obeyed; a longer one is cut to this. */
const MAX_RETRY_AFTER_MS = 10_000;

/**
 * Whether `err` is worth the same request again: a transient network failure
 * (see isTransientNetworkError), a throttled request, or, for an idempotent
 * request, an answer that the server is unavailable.
 */
export function isRetryable(err: unknown, request: 'any' | 'idempotent'): boolean {
  if (isTransientNetworkError(err, request)) return true;
  if (!(err instanceof ApiException) || !CANNOT_SERVE_STATUS.has(err.code)) return false;
  // A throttled request was turned away unread; behind a 502–504 it may have been acted on.
  return err.code === THROTTLED || request === 'idempotent';
}

/** A pause of about `ms` (half to one and a half times it), so retries do not move in step. */
export function jittered(ms: number): number {
  return ms / 2 + Math.random() * ms;
}

/** The pause an answer asks for (`Retry-After: <seconds>`), if it names one. */
export function retryAfterMs(err: unknown): number | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const headers = (err.headers ?? {}) as Record<string, string | undefined>;
  const value = headers['retry-after'] ?? headers['Retry-After'];
  const seconds = Number(value);
  if (value === undefined || value === '' || !Number.isFinite(seconds) || seconds < 0)
    return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, seconds * 1000);
}

/**
 * Runs `call`, repeating it after a transient failure. `request` says which
 * failures may be repeated (see isRetryable); any other error, or the last
 * attempt's, is thrown as it is. The pause doubles from `firstPauseMs`
 * (with jitter), unless the answer names one (`Retry-After`).
 */
export async function retryTransient<T>(
  call: () => Promise<T>,
  request: 'any' | 'idempotent',
  retry: TransientRetry = DEFAULT_TRANSIENT_RETRY,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= retry.attempts || !isRetryable(err, request)) throw err;
      const wait = retryAfterMs(err) ?? jittered(retry.firstPauseMs * 2 ** (attempt - 1));
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
