import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ephemeralPortRange,
  freePort,
  restartSafePort,
  restartSafePortRange,
} from '../../src/net/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'labvirt-ports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const listen = (port: number) =>
  new Promise<Server>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
const close = (srv: Server) => new Promise<void>((r) => srv.close(() => r()));

describe('ports a server can be started on again', () => {
  it("reads the kernel's ephemeral range, and nothing from a file that is missing or garbled", () => {
    const file = join(dir, 'range');
    writeFileSync(file, '32768\t60999\n');
    expect(ephemeralPortRange(file)).toEqual({ from: 32768, to: 60999 });
    writeFileSync(file, 'sixty\n');
    expect(ephemeralPortRange(file)).toBeUndefined();
    expect(ephemeralPortRange(join(dir, 'missing'))).toBeUndefined();
  });

  it("keeps out of the ephemeral range and Kubernetes' NodePort range: below, else above, else nowhere", () => {
    expect(restartSafePortRange({ from: 32768, to: 60999 })).toEqual({ from: 10000, to: 29999 });
    expect(restartSafePortRange({ from: 20000, to: 60999 })).toEqual({ from: 10000, to: 19999 });
    expect(restartSafePortRange({ from: 1024, to: 60000 })).toEqual({ from: 60001, to: 65535 });
    expect(restartSafePortRange({ from: 1024, to: 20000 })).toEqual({ from: 32768, to: 65535 });
    expect(restartSafePortRange({ from: 1024, to: 65000 })).toBeUndefined();
  });

  it('gives a port of the range that nothing listens on, skipping one taken', async () => {
    const held = await listen(0);
    const taken = (held.address() as { port: number }).port;
    try {
      // A range of two ports, one of them taken: the other, wherever the search starts.
      const other = taken > 1024 ? taken - 1 : taken + 1;
      const range = { from: Math.min(taken, other), to: Math.max(taken, other) };
      const free = await listen(other)
        .then(close)
        .then(
          () => true,
          () => false,
        );
      if (free) {
        for (let i = 0; i < 10; i++) expect(await freePort('127.0.0.1', range)).toBe(other);
      }
      await expect(freePort('127.0.0.1', { from: taken, to: taken })).rejects.toThrow(
        `no free port in ${taken}-${taken} on 127.0.0.1`,
      );
    } finally {
      await close(held);
    }
  });

  it.runIf(ephemeralPortRange() && restartSafePortRange())(
    "on Linux, a restart-safe port is outside the kernel's ephemeral range and can be listened on",
    async () => {
      const ephemeral = ephemeralPortRange()!;
      const port = await restartSafePort();
      expect(port < ephemeral.from || port > ephemeral.to).toBe(true);
      expect(port < 30000 || port > 32767).toBe(true);
      await close(await listen(port));
    },
  );
});
