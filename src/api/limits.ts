import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import {
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';
import { actorOf } from './auth.js';
import { errorBody } from './errors.js';

export interface ApiLimits {
  /** Requests a minute one bearer token may make (all students together). */
  perTokenPerMinute: number;
  /** Requests a minute made for one student (`X-Labvirt-Student`, or the student a start names). */
  perStudentPerMinute: number;
  /** Checks running at once in this process; more are answered 429 at once. */
  maxConcurrentChecks: number;
  /**
   * Where the counts live. With Redis they hold across replicas; if Redis
   * fails, each replica counts in memory meanwhile (the limits still hold per
   * replica). Without it, memory only.
   */
  redis?: Redis;
  /** Prefix of the Redis keys (e.g. `labvirt:api-rate`). */
  keyPrefix?: string;
}

function limiter(limits: ApiLimits, name: string, points: number): RateLimiterAbstract {
  const memory = new RateLimiterMemory({ keyPrefix: name, points, duration: 60 });
  if (!limits.redis) return memory;
  return new RateLimiterRedis({
    storeClient: limits.redis,
    keyPrefix: `${limits.keyPrefix ?? 'labvirt:api-rate'}:${name}`,
    points,
    duration: 60,
    insuranceLimiter: memory,
  });
}

const tokenKey = (authorization: string) =>
  createHash('sha256').update(authorization).digest('hex').slice(0, 16);

function tooMany(reply: FastifyReply, retryAfterSeconds: number, message: string) {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return reply
    .code(429)
    .header('retry-after', String(seconds))
    .send(
      errorBody('RATE_LIMITED', `${message}: retry in ${seconds} s`, {
        retryAfterSeconds: seconds,
      }),
    );
}

/**
 * Rate limits for the authenticated routes of `scope` (added after the token
 * check): per token and per student, 429 with `Retry-After` beyond them; and
 * a cap on checks running at once in this process, because a check holds SSH
 * sessions in the student's VMs for seconds.
 */
export function installRateLimits(scope: FastifyInstance, limits: ApiLimits): void {
  const perToken = limiter(limits, 'token', limits.perTokenPerMinute);
  const perStudent = limiter(limits, 'student', limits.perStudentPerMinute);
  let checksRunning = 0;

  const consume = async (
    rl: RateLimiterAbstract,
    key: string,
  ): Promise<RateLimiterRes | undefined> => {
    try {
      await rl.consume(key);
      return undefined;
    } catch (refusal) {
      if (refusal instanceof RateLimiterRes) return refusal;
      // Neither store answered: let the request through; the route itself
      // reports the outage (503) if it needs Redis.
      return undefined;
    }
  };

  // preHandler: the body is parsed, so a start's `student` counts too.
  scope.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    const token = await consume(perToken, tokenKey(request.headers.authorization ?? ''));
    if (token)
      return tooMany(reply, token.msBeforeNext / 1000, 'too many requests with this API token');
    const body = request.body as { student?: unknown } | undefined;
    const student =
      actorOf(request) ?? (typeof body?.student === 'string' ? body.student : undefined);
    if (student !== undefined) {
      const refused = await consume(perStudent, student);
      if (refused)
        return tooMany(reply, refused.msBeforeNext / 1000, 'too many requests for this student');
    }
    if (request.routeOptions.url?.endsWith('/check') && request.method === 'POST') {
      if (checksRunning >= limits.maxConcurrentChecks) {
        return tooMany(reply, 1, 'too many checks are running right now');
      }
      checksRunning++;
      let released = false;
      const release = () => {
        if (!released) checksRunning--;
        released = true;
      };
      reply.raw.once('close', release);
      reply.raw.once('finish', release);
    }
  });
}
