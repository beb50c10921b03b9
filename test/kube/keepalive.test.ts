import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Watch } from '@kubernetes/client-node';
import {
  HostCluster,
  IDLE_CONNECTION_MS,
  loadKubeConfig,
  MAX_CALL_CONNECTIONS,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';

/**
 * A TCP relay in front of the sim that counts the connections it accepts:
 * every TLS handshake client-node makes to the API server shows up here.
 */
async function countingRelay(target: URL): Promise<{
  port: number;
  accepted: () => number;
  open: () => number;
  close: () => Promise<void>;
}> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    accepted++;
    sockets.add(client);
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    client.pipe(upstream).pipe(client);
    const done = () => {
      sockets.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', done).on('error', done);
    upstream.on('close', done).on('error', done);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    accepted: () => accepted,
    open: () => sockets.size,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('keep-alive connections to the API server', () => {
  let dir: string;
  let sim: SimHandle;
  let relay: Awaited<ReturnType<typeof countingRelay>>;
  let kubeconfig: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-keepalive-'));
    sim = await startSim({ dir: join(dir, 'sim'), speed: 1000, guests: false });
    relay = await countingRelay(new URL(sim.url));
    kubeconfig = join(dir, 'relayed-kubeconfig');
    writeFileSync(
      kubeconfig,
      readFileSync(sim.kubeconfigPath, 'utf8').replace(sim.url, `https://127.0.0.1:${relay.port}`),
    );
  });

  afterAll(async () => {
    await relay?.close();
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reuses one connection for calls made one after another', async () => {
    const kc = loadKubeConfig({ kubeconfig });
    const cluster = new HostCluster(kc, { logger: silentLogger() });
    const before = relay.accepted();
    for (let i = 0; i < 30; i++) {
      expect(await cluster.getNamespace('default')).toBeDefined();
    }
    await cluster.listManagedNamespaces();
    // One connection, or two when a call starts before undici has put the
    // previous one back in the pool; never one per call.
    expect(relay.accepted() - before).toBeLessThanOrEqual(2);
    expect(kc.dispatcherCount).toBe(1);
    await cluster.close();
  });

  it('keeps its connection through a pause of several seconds (the API server gives no keep-alive hint)', async () => {
    const kc = loadKubeConfig({ kubeconfig });
    const cluster = new HostCluster(kc, { logger: silentLogger() });
    await cluster.getNamespace('default');
    const before = relay.accepted();
    // Longer than undici's own idle default (4 s), which applies when the server says nothing.
    expect(IDLE_CONNECTION_MS).toBeGreaterThan(5_000);
    await new Promise((r) => setTimeout(r, 5_000));
    expect(await cluster.getNamespace('default')).toBeDefined();
    expect(relay.accepted() - before).toBe(0);
    await cluster.close();
  });

  it('keeps the connections of a burst for the next bursts', async () => {
    const kc = loadKubeConfig({ kubeconfig });
    const cluster = new HostCluster(kc, { logger: silentLogger() });
    const before = relay.accepted();
    for (let i = 0; i < 6; i++) {
      await Promise.all(Array.from({ length: 10 }, () => cluster.getNamespace('default')));
    }
    // 60 calls, 10 at a time: at most about two connections per concurrent
    // call (undici puts a socket back in its pool a tick after the response
    // ends, so a call made in that tick opens another), never one per call.
    expect(relay.accepted() - before).toBeLessThanOrEqual(21);
    await cluster.close();
  });

  it('serves a burst of 100 calls over a bounded number of connections', async () => {
    const kc = loadKubeConfig({ kubeconfig });
    const cluster = new HostCluster(kc, { logger: silentLogger() });
    const before = relay.accepted();
    // 100 calls at once, as when 100 envs are set up together: each used to
    // open (and keep, with its TLS state) a connection of its own.
    const answers = await Promise.all(
      Array.from({ length: 100 }, () => cluster.getNamespace('default')),
    );
    expect(answers.every((ns) => ns?.metadata?.name === 'default')).toBe(true);
    expect(relay.accepted() - before).toBeLessThanOrEqual(MAX_CALL_CONNECTIONS);
    expect(relay.open()).toBeLessThanOrEqual(MAX_CALL_CONNECTIONS);
    await cluster.close();
  });

  it('answers calls while more watches are held than calls have connections', async () => {
    const kc = loadKubeConfig({ kubeconfig });
    const cluster = new HostCluster(kc, { logger: silentLogger() });
    await expect.poll(() => relay.open(), { timeout: 5000 }).toBe(0);
    const held = MAX_CALL_CONNECTIONS + 2;
    const watches = await Promise.all(
      Array.from({ length: held }, () =>
        new Watch(kc).watch(
          '/api/v1/namespaces',
          {},
          () => undefined,
          () => undefined,
        ),
      ),
    );
    try {
      // Every watch holds a connection of its own…
      await expect.poll(() => relay.open(), { timeout: 10_000 }).toBeGreaterThanOrEqual(held);
      // …and calls still go through (they would queue forever behind the watches otherwise).
      const answers = await Promise.all(
        Array.from({ length: 5 }, () => cluster.getNamespace('default')),
      );
      expect(answers.every((ns) => ns?.metadata?.name === 'default')).toBe(true);
    } finally {
      for (const w of watches) w.abort();
      await cluster.close();
    }
  });

  it('closes its connections on close()', async () => {
    const kc = loadKubeConfig({ kubeconfig });
    const cluster = new HostCluster(kc, { logger: silentLogger() });
    // The earlier tests closed their clients: their connections go away.
    await expect.poll(() => relay.open(), { timeout: 5000 }).toBe(0);
    await cluster.getNamespace('default');
    expect(relay.open()).toBe(1);
    await cluster.close();
    await expect.poll(() => relay.open(), { timeout: 5000 }).toBe(0);
  });
});
