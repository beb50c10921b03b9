import type { LabvirtEvent } from '../../events/index.js';
import type { SessionView } from '../../sessions/types.js';
import { sessionProgress } from '../progress.js';

/** Events from every replica (the Redis-backed feed), or this process's bus alone. */
export interface SessionUpdates {
  subscribe(listener: (event: LabvirtEvent) => void): () => void;
}

export interface WaitOptions {
  sessionId: string;
  /** The progress the client has seen ({@link sessionProgress}). */
  after: string;
  waitMs: number;
  read: () => Promise<SessionView>;
  updates: SessionUpdates;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /**
   * A read this often even without an event: an event lost with a Redis
   * reconnect costs the client this long at most, not its whole wait.
   */
  watchdogMs?: number;
  /**
   * While the session waits in line, others being served or leaving move it
   * up: those events re-read it at most this often (at a burst they come by
   * the hundred for every waiter).
   */
  lineMs?: number;
}

/**
 * The session's view as soon as its progress differs from `after`, or as it
 * is when `waitMs` is over: a long poll, so a waiting client makes one request
 * per change instead of one a second. Events of the session itself re-read it
 * at once; events that move the line re-read a waiting session at most every
 * `lineMs`.
 */
export async function viewAfterChange(options: WaitOptions): Promise<SessionView> {
  const { sessionId, after, read, signal } = options;
  const watchdogMs = options.watchdogMs ?? 5000;
  const lineMs = options.lineMs ?? 1000;
  const deadline = Date.now() + options.waitMs;
  let own = false;
  let line = false;
  let wake = (): void => undefined;
  let view: SessionView | undefined;
  const off = options.updates.subscribe((event) => {
    if ('sessionId' in event && event.sessionId === sessionId) own = true;
    else if (view?.state === 'waiting' && movesTheLine(event)) line = true;
    else return;
    wake();
  });
  const onAbort = () => wake();
  signal.addEventListener('abort', onAbort);
  try {
    let readAt = Date.now();
    view = await read();
    while (sessionProgress(view) === after && !signal.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const due = (): number =>
          own ? 0 : line ? Math.max(0, readAt + lineMs - Date.now()) : watchdogMs;
        let timer: NodeJS.Timeout | undefined;
        const arm = () => {
          clearTimeout(timer);
          if (signal.aborted) return resolve();
          timer = setTimeout(resolve, Math.min(due(), deadline - Date.now()));
        };
        wake = arm;
        arm();
      });
      wake = () => undefined;
      if (signal.aborted) break;
      own = false;
      line = false;
      readAt = Date.now();
      view = await read();
    }
    return view;
  } finally {
    off();
    signal.removeEventListener('abort', onAbort);
  }
}

/** Someone ahead in a line was served, left, or was put back at its head. */
function movesTheLine(event: LabvirtEvent): boolean {
  return (
    (event.type === 'env.state' && event.to === 'claimed') ||
    event.type === 'session.ended' ||
    event.type === 'session.moved'
  );
}
