import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export interface PortRange {
  from: number;
  to: number;
}

/** Where Linux says the kernel takes ephemeral ports from; undefined where it does not say. */
export function ephemeralPortRange(
  file = '/proc/sys/net/ipv4/ip_local_port_range',
): PortRange | undefined {
  try {
    const [from, to] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (!Number.isInteger(from) || !Number.isInteger(to) || from! > to!) return undefined;
    return { from: from!, to: to! };
  } catch {
    return undefined;
  }
}

const LOWEST = 10_000;
const ROOM = 1_000;
/** Kubernetes' default NodePort range: the simulator listens on it for host NodePort Services. */
const NODE_PORTS = { from: 30_000, to: 32_767 };

/**
 * Ports the kernel never hands out by itself. A server stopped and started
 * again on the same port (a restarted Redis, a labvirt killed and started
 * again in a crash test) finds it free only if nothing took it meanwhile,
 * and every outgoing connection and every listen on port 0 on the machine
 * takes an ephemeral one. Kubernetes' NodePort range is left out too (the
 * simulator's host NodePorts listen there). Undefined when the ephemeral
 * range is unknown or leaves no room.
 */
export function restartSafePortRange(
  ephemeral: PortRange | undefined = ephemeralPortRange(),
): PortRange | undefined {
  if (!ephemeral) return undefined;
  const below = Math.min(ephemeral.from, NODE_PORTS.from) - 1;
  if (below - LOWEST >= ROOM) return { from: LOWEST, to: below };
  const above = Math.max(ephemeral.to, NODE_PORTS.to) + 1;
  if (65_535 - above >= ROOM) return { from: above, to: 65_535 };
  return undefined;
}

/**
 * A port free on `host` now: one from `range`, tried from a random place in
 * it (processes looking at once spread out instead of all finding its first
 * port), or one the OS picks when there is no range.
 */
export async function freePort(host = '127.0.0.1', range?: PortRange): Promise<number> {
  const probe = (port: number) =>
    new Promise<number | undefined>((resolve, reject) => {
      const srv = createServer();
      srv.unref();
      srv.on('error', (err: NodeJS.ErrnoException) =>
        err.code === 'EADDRINUSE' && range ? resolve(undefined) : reject(err),
      );
      srv.listen(port, host, () => {
        const { port: bound } = srv.address() as { port: number };
        srv.close(() => resolve(bound));
      });
    });
  if (!range) return (await probe(0))!;
  const size = range.to - range.from + 1;
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    const free = await probe(range.from + ((start + i) % size));
    if (free !== undefined) return free;
  }
  throw new Error(`no free port in ${range.from}-${range.to} on ${host}`);
}

/** A free port on `host` that stays free while its server is down: see restartSafePortRange. */
export function restartSafePort(host = '127.0.0.1'): Promise<number> {
  return freePort(host, restartSafePortRange());
}
