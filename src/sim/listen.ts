import type { Server } from 'node:net';

/**
 * Where the simulator's servers listen (its API, each guest's sshd, each
 * student cluster's API server): one address, and optionally a port range
 * shared by all of them. Default: 127.0.0.1, ports chosen by the OS.
 */
export interface ListenSpec {
  host: string;
  ports?: { from: number; to: number };
}

export const LOOPBACK: ListenSpec = { host: '127.0.0.1' };

export class NoFreePortError extends Error {
  constructor(spec: ListenSpec) {
    super(
      `no free port in ${spec.ports?.from}-${spec.ports?.to} on ${spec.host}: widen the port range`,
    );
    this.name = 'NoFreePortError';
  }
}

/** Next port to try, per range: servers started one after another skip the ones taken. */
const cursors = new WeakMap<ListenSpec, number>();

/** Listens on `spec.host`, on a free port of `spec.ports` (or one the OS picks); returns the port. */
export async function listenWithin(server: Server, spec: ListenSpec = LOOPBACK): Promise<number> {
  const attempt = (port: number) =>
    new Promise<boolean>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        if (err.code === 'EADDRINUSE' && spec.ports) resolve(false);
        else reject(err);
      };
      const onListening = () => {
        server.off('error', onError);
        resolve(true);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(port, spec.host);
    });
  if (!spec.ports) {
    await attempt(0);
    return (server.address() as { port: number }).port;
  }
  const { from, to } = spec.ports;
  const size = to - from + 1;
  const start = cursors.get(spec) ?? from;
  for (let i = 0; i < size; i++) {
    const port = from + ((start - from + i) % size);
    if (await attempt(port)) {
      cursors.set(spec, port + 1 > to ? from : port + 1);
      return port;
    }
  }
  throw new NoFreePortError(spec);
}
