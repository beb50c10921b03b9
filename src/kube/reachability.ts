import { ApiException } from './client-node.js';
import type { Logger } from '../log/index.js';
import { OutageLog } from '../log/outage.js';
import {
  CANNOT_SERVE_STATUS,
  isTransientNetworkError,
  jittered,
  networkErrorMessage,
} from './transient.js';

/**
 * Whether an error says the host's API server could not be reached or could
 * not serve now (the connection refused, cut or timed out; 429, 502–504),
 * rather than that it refused this request. The status is an ApiException's
 * `code`, or a watch's `statusCode` (client-node's Watch throws a plain Error).
 */
export function isApiUnavailable(err: unknown): boolean {
  // A caller may have wrapped it to say what it was doing (`{ cause }`).
  let cur: unknown = err;
  for (let depth = 0; cur instanceof Error && depth < 5; depth++) {
    const status =
      cur instanceof ApiException ? cur.code : (cur as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number') return CANNOT_SERVE_STATUS.has(status);
    if (isTransientNetworkError(cur, 'idempotent')) return true;
    cur = cur.cause;
  }
  return false;
}

/** The message of an API error's Status body, for logs and reports. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body = err.body as unknown;
    try {
      const status = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: string };
      if (status?.message) return `${err.code}: ${status.message}`;
    } catch {
      // not JSON: fall through
    }
    return `${err.code}: ${String(body).slice(0, 200)}`;
  }
  return err instanceof Error ? networkErrorMessage(err) : String(err);
}

export type LineLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * One account, per process, of the host's API server being out of reach or
 * unable to serve.
 * During an outage every provisioning attempt, teardown, maintenance run and
 * watch fails on its own, and each used to write its own warning (56 in 20 s
 * with a two-env pool). Now the first failure is one warning, the call sites
 * log what the outage explains at debug level, and the first call answered
 * afterwards closes it with one info line.
 */
export class KubeApiReachability {
  /** Whether the API server is out of reach now, and how often it was (metrics). */
  readonly outage: OutageLog;
  private readonly counted = new WeakSet<object>();

  constructor(log: Logger, now: () => number = Date.now) {
    this.outage = new OutageLog(log, {
      lost: 'the host API server cannot serve labvirt now; labvirt keeps retrying (further failures at debug level)',
      again: 'host API call failed',
      back: 'the host API server serves again',
      steadyMs: 1000,
      now,
    });
  }

  /**
   * Every failed call: an unavailable API server opens (or continues) the
   * outage. An error is counted once, whoever reports it (a watch's list
   * failing is seen by the client and again by the watch).
   */
  failed(err: unknown): void {
    if (typeof err === 'object' && err !== null) {
      if (this.counted.has(err)) return;
      this.counted.add(err);
    }
    if (isApiUnavailable(err)) this.outage.failure({ err: apiErrorMessage(err) });
  }

  /** Every answered call. */
  answered(): void {
    this.outage.success();
  }

  /**
   * The level for a call site's line about `err`: debug when the outage's
   * warning already says it, `normal` otherwise.
   */
  levelFor(err: unknown, normal: LineLevel = 'warn'): LineLevel {
    return isApiUnavailable(err) && this.outage.open ? 'debug' : normal;
  }
}

/** client-node's message for an error answer: code, a fixed phrase, the whole body and every header. */
function readable(err: unknown): unknown {
  if (err instanceof ApiException) {
    Object.defineProperty(err, 'message', {
      value: apiErrorMessage(err),
      configurable: true,
      writable: true,
    });
  }
  return err;
}

/**
 * An API client of client-node whose calls report to `reachability` and whose
 * error answers carry a readable message (`503: the server is shutting
 * down`) instead of client-node's five lines with every response header,
 * which reached logs, Events and reports as they were. The exception is the
 * same object: its code, body and headers are kept.
 */
export function observedApi<T extends object>(api: T, reachability?: KubeApiReachability): T {
  return new Proxy(api, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]): unknown => {
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        return result.then(
          (answer: unknown) => {
            reachability?.answered();
            return answer;
          },
          (err: unknown) => {
            reachability?.failed(err);
            throw readable(err);
          },
        );
      };
    },
  });
}

export interface OutlastOptions {
  /** How long to keep trying while the API server is unavailable. */
  budgetMs: number;
  /** First pause; doubled (with jitter) up to maxPauseMs. */
  firstPauseMs?: number;
  maxPauseMs?: number;
}

/**
 * Runs `op` again while it fails because the API server is unavailable, for
 * up to `budgetMs`. For steps that would otherwise blame something else for
 * the outage: a claim whose first write fails must not condemn a good env
 * (and move its student to the next one, which fails the same way).
 */
export async function outlastOutage<T>(op: () => Promise<T>, opts: OutlastOptions): Promise<T> {
  const started = Date.now();
  let pause = opts.firstPauseMs ?? 1000;
  const maxPause = opts.maxPauseMs ?? 8000;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      const wait = jittered(pause);
      if (!isApiUnavailable(err) || Date.now() - started + wait > opts.budgetMs) throw err;
      await new Promise((r) => setTimeout(r, wait));
      pause = Math.min(maxPause, pause * 2);
    }
  }
}
