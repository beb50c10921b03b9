import type { Socket } from 'node:net';

/**
 * Lets the packets that one read produces leave each of `sockets` in one
 * `writev` instead of one `write` syscall each.
 *
 * ssh2 hands every SSH packet to its socket with its own `write`; the
 * gateway relays between two SSH connections, so one chunk read from either
 * side turns into several packets on the other (and window adjustments on
 * both). While a chunk is handled the sockets are corked; they are uncorked
 * on the next tick, after ssh2 has handled it — the way Node's own HTTP
 * server batches a response's writes. Nothing waits for more input, so an
 * interactive keystroke is not delayed beyond the current tick.
 *
 * Call it once ssh2 has attached its own `data` handlers (it pauses the
 * socket first, so the listener added here does not start the flow).
 */
export function batchWrites(...sockets: Socket[]): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    for (const socket of sockets) socket.uncork();
  };
  const cork = () => {
    if (corked) return;
    corked = true;
    for (const socket of sockets) socket.cork();
    process.nextTick(uncork);
  };
  for (const socket of sockets) socket.prependListener('data', cork);
}
