/**
 * Bounding a wait on something that may never answer (a Redis that is down
 * queues commands without limit; a hung lookup), without leaving a timer
 * behind or an unhandled rejection from the late answer.
 */

/** `work`, or `late()`'s error once `ms` passed without an answer. */
export function rejectAfter<T>(work: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** Waits for `work` at most `ms`, whatever its outcome; true when it settled in time. */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  const late = new Error('late');
  return rejectAfter(work, ms, () => late).then(
    () => true,
    (err: unknown) => err !== late,
  );
}
