import type { SessionView } from '../sessions/types.js';

/**
 * How far a session has got, as a client waiting on it sees it: its state,
 * and while it waits for an env its place in line (`waiting:3`). A client
 * sends the last one it saw as `GET /v1/sessions/:id?after=…` and gets an
 * answer once it differs.
 */
export function sessionProgress(view: Pick<SessionView, 'state' | 'queue'>): string {
  return view.state === 'waiting' && view.queue ? `waiting:${view.queue.position}` : view.state;
}
