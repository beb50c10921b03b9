import type { Logger } from '../log/index.js';
import { OutageLog } from '../log/outage.js';

/** What an ioredis client (or anything that reconnects like one) emits. */
interface Reconnecting {
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
}

/** Error codes and messages that mean "Redis cannot be reached", not "Redis refused this". */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
const CONNECTION_MESSAGES =
  /^(Connection is closed|Stream isn't writeable|Reached the max retries per request limit|connect ETIMEDOUT|read ECONNRESET)/;

/** Whether an error says Redis could not be reached (rather than that a command failed). */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (
    (code !== undefined && CONNECTION_CODES.has(code)) || CONNECTION_MESSAGES.test(err.message)
  );
}

/**
 * One account of Redis being out of reach, for the whole process. Every
 * connection (labvirt's own, its subscribers, each BullMQ queue and worker)
 * retries on its own several times a second, and each used to log every
 * failed attempt: 113 lines and 28 raw stack traces in 10 s. Now the first
 * connection error is one warning naming the connection, the rest while the
 * outage lasts are debug lines, and the first watched client that is ready
 * again ends it with one info line saying how long it lasted. Errors that
 * are not about reaching Redis are logged as they come.
 */
export class RedisReachability {
  /** Whether Redis is out of reach now, and how often it was (metrics). */
  readonly outage: OutageLog;

  constructor(
    private readonly log: Logger,
    now: () => number = Date.now,
  ) {
    this.outage = new OutageLog(log, {
      lost: 'Redis is out of reach; every connection retries (further errors at debug level)',
      again: 'redis connection error',
      back: 'Redis is reachable again',
      // A BullMQ connection may fail while the watched ones never noticed.
      quietEndsMs: 60_000,
      now,
    });
  }

  /** Logs an ioredis client's errors, and ends an outage when it is ready again. */
  watch<T extends Reconnecting>(client: T, connection: string): T {
    client.on('error', (err) => this.error(err, connection));
    client.on('ready', () => this.outage.success({ connection }));
    return client;
  }

  /**
   * An error from one of Redis's users (a client, a BullMQ queue or worker):
   * part of the outage when it is about reaching Redis, logged otherwise as
   * `msg` at `level` (a worker's own failure is not Redis's).
   */
  error(
    err: Error,
    connection: string,
    level: 'warn' | 'error' = 'warn',
    msg = 'redis error',
  ): void {
    if (!isConnectionError(err)) {
      this.log[level]({ connection, err: err.message }, msg);
      return;
    }
    this.outage.failure({ connection, err: err.message });
  }
}
