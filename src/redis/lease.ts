import type { Redis } from 'ioredis';
import type { Logger } from '../log/index.js';

/**
 * One replica at a time runs a role that every replica could run: it holds a
 * lease in Redis (a key naming it, with a time to live) and renews it; the
 * others ask at the same pace and take it over when it lapses or is given
 * back. For work that is correct in any number of replicas but costly in each
 * (the NodePort sync keeps an SSH relay and a watch per active env: in every
 * replica, that is one more of each per replica), so a lapse or a brief
 * overlap costs time, never correctness.
 */

/**
 * Takes the lease when nobody holds it (a fresh or restarted Redis too),
 * renews it when this replica holds it; 1 when this replica holds it after.
 */
const TAKE_OR_RENEW = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`;

/** Gives the lease back, only if this replica still holds it. */
const GIVE_BACK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

/** How long stop() waits to give the lease back before leaving it to lapse. */
const GIVE_BACK_WAIT_MS = 1000;

export interface LeasedRoleOptions {
  redis: Redis;
  /** The lease's Redis key (under labvirt's prefix). */
  key: string;
  /** This replica's name in the lease: unique per process. */
  holder: string;
  /** How long a lease lasts unrenewed; it is renewed (or asked for) every third of it. */
  ttlMs: number;
  /** What the role is, for the log. */
  role: string;
  /** Starts the role; the returned stop() ends it when the lease is lost or at stop(). */
  start: () => { stop(): Promise<void> | void };
  log: Logger;
}

export interface LeasedRole {
  /** Whether this replica runs the role now. */
  readonly running: boolean;
  /** Resolves after the first attempt to take the lease (taken or not). */
  readonly settled: Promise<void>;
  /** Ends the role here and gives the lease back, so another replica takes it at its next ask. */
  stop(): Promise<void>;
}

export function runUnderLease(opts: LeasedRoleOptions): LeasedRole {
  const everyMs = Math.max(100, Math.floor(opts.ttlMs / 3));
  let instance: { stop(): Promise<void> | void } | undefined;
  let stopped = false;
  let redisDown = false;
  let timer: NodeJS.Timeout | undefined;
  // Asks never overlap: a slow Redis must not start the role twice.
  let chain: Promise<void> = Promise.resolve();

  const endRole = async () => {
    const running = instance;
    instance = undefined;
    await running?.stop();
  };

  const ask = async () => {
    let holds: boolean;
    try {
      holds =
        (await opts.redis.eval(TAKE_OR_RENEW, 1, opts.key, opts.holder, String(opts.ttlMs))) === 1;
      if (redisDown) opts.log.info({ role: opts.role }, 'Redis answers again: lease asked for');
      redisDown = false;
    } catch (err) {
      // Nobody can take the lease while Redis is unreachable, so whoever runs
      // the role keeps it running; two replicas for a moment after is harmless.
      if (!redisDown)
        opts.log.warn(
          { role: opts.role, err: (err as Error).message },
          'cannot reach Redis for the lease; keeping the role as it is',
        );
      redisDown = true;
      return;
    }
    if (stopped) return;
    if (holds && !instance) {
      try {
        instance = opts.start();
      } catch (err) {
        // Still holding the lease, the next ask starts it again.
        opts.log.error(
          { role: opts.role, err: (err as Error).message },
          'the role failed to start',
        );
        return;
      }
      opts.log.info({ role: opts.role }, 'this replica took the lease and runs the role');
    } else if (!holds && instance) {
      opts.log.info({ role: opts.role }, 'another replica holds the lease: the role stops here');
      await endRole();
    }
  };

  const safeAsk = () =>
    ask().catch((err: unknown) =>
      opts.log.error({ role: opts.role, err: (err as Error).message }, 'the role failed to stop'),
    );
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      chain = chain.then(safeAsk).then(schedule);
    }, everyMs);
    timer.unref();
  };

  chain = chain.then(safeAsk);
  const settled = chain;
  void settled.then(schedule);

  return {
    get running() {
      return instance !== undefined;
    },
    settled,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      // One budget for both waits on Redis: with Redis down a stop waits a
      // second, not two (a shutdown past its grace period gives each part one).
      const asked = Date.now();
      // An ask that waits on a Redis that is down starts nothing once it answers.
      await within(chain, GIVE_BACK_WAIT_MS);
      const budgetLeft = GIVE_BACK_WAIT_MS - (Date.now() - asked);
      const held = instance !== undefined;
      await endRole();
      if (!held) return;
      // A Redis that is down would hold the command: the lease then lapses by itself.
      await within(
        opts.redis.eval(GIVE_BACK, 1, opts.key, opts.holder).catch(() => undefined),
        Math.max(0, budgetLeft),
      );
    },
  };
}

/** Waits for `promise`, at most `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
