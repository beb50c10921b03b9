import type { SessionView } from '../sessions/types.js';

/**
 * How far a session has got, as a client waiting on it sees it: its state,
 * while it waits for an env its place in line (`waiting:3`), and while it is
 * prepared whether setup was found slow (`preparing:slow`). A client sends
 * the last one it saw as `GET /v1/sessions/:id?after=…` and gets an answer
 * once it differs.
 */
export function sessionProgress(view: Pick<SessionView, 'state' | 'queue' | 'slow'>): string {
  if (view.state === 'waiting' && view.queue) return `waiting:${view.queue.position}`;
  return view.slow ? `${view.state}:slow` : view.state;
}
