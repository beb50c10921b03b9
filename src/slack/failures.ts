import type { EventBus } from '../events/index.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/index.js';

/**
 * Keeps failures for operators' Home tab and `/lab pool`. Every replica
 * records what happens in it (events are per process), into Redis.
 */
export function recordFailures(events: EventBus, store: Pick<Store, 'recordFailure'>, log: Logger) {
  const record = (what: string) =>
    store
      .recordFailure({ at: Date.now(), what })
      .catch((err: unknown) =>
        log.warn({ err: (err as Error).message }, 'could not record a failure'),
      );
  const offEnv = events.on('env.failed', (e) =>
    record(
      `env ${e.envId} (${e.flavor}) attempt ${e.attempt}${e.willRetry ? '' : ', giving up'}: ${e.reason}`,
    ),
  );
  const offSession = events.on('session.ended', (e) =>
    e.reason === 'failed'
      ? record(`session ${e.sessionId} (${e.labId}) failed${e.detail ? `: ${e.detail}` : ''}`)
      : undefined,
  );
  return () => {
    offEnv();
    offSession();
  };
}
