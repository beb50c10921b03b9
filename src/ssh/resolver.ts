import { readFileSync, statSync } from 'node:fs';

/** Maps a guest IP and port to the endpoint labvirt actually dials (see CONTRACTS.md). */
export type GuestResolver = (ip: string, port: number) => { host: string; port: number };

/** Production: guests are reachable at their pod IPs. */
export const directResolver: GuestResolver = (ip, port) => ({ host: ip, port });

/** Thrown when a guest is not (yet) in the address map; the executor retries it like a refused connection. */
export class UnknownGuestError extends Error {
  readonly code = 'EGUESTUNKNOWN';
  constructor(message: string) {
    super(message);
    this.name = 'UnknownGuestError';
  }
}

/**
 * Reads a `{ "<ip>:<port>": "127.0.0.1:<port>" }` map written by a standalone
 * sim; re-read whenever the file changes, since guests come and go.
 */
export function fileResolver(path: string): GuestResolver {
  let mtimeMs = -1;
  let map: Record<string, string> = {};
  return (ip, port) => {
    try {
      const st = statSync(path);
      if (st.mtimeMs !== mtimeMs) {
        map = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
        mtimeMs = st.mtimeMs;
      }
    } catch (err) {
      throw new UnknownGuestError(
        `guest address map ${path} unreadable: ${(err as Error).message}`,
      );
    }
    const to = map[`${ip}:${port}`];
    const m = to ? /^(.+):(\d+)$/.exec(to) : null;
    if (!m) throw new UnknownGuestError(`no guest at ${ip}:${port} in ${path}`);
    return { host: m[1] as string, port: Number(m[2]) };
  };
}
