import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HostCluster,
  MAX_CALL_CONNECTIONS,
  apiErrorMessage,
  loadKubeConfig,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';

/**
 * A TCP relay in front of the sim that can break connections the way a
 * loaded network does: reset the next connections as they arrive, or stop
 * listening for a while (connections refused). Counts what it accepts.
 */
class FaultyRelay {
  accepted = 0;
  private resetNext = 0;
  private readonly sockets = new Set<Socket>();
  private server?: Server;
  port = 0;

  constructor(private readonly target: URL) {}

  async listen(): Promise<void> {
    const server = createServer((client) => {
      this.accepted++;
      if (this.resetNext > 0) {
        this.resetNext--;
        client.resetAndDestroy();
        return;
      }
      this.sockets.add(client);
      const upstream = createConnection({
        host: this.target.hostname,
        port: Number(this.target.port),
      });
      client.pipe(upstream).pipe(client);
      const done = () => {
        this.sockets.delete(client);
        client.destroy();
        upstream.destroy();
      };
      client.on('close', done).on('error', done);
      upstream.on('close', done).on('error', done);
    });
    this.server = server;
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', r));
    this.port = (server.address() as { port: number }).port;
  }

  /** Resets the next `n` connections as soon as they are accepted. */
  resetConnections(n: number): void {
    this.resetNext = n;
  }

  /** Cuts every open connection and stops listening: new ones are refused. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}

describe('API calls through a network that fails for a moment', () => {
  let dir: string;
  let sim: SimHandle;
  let relay: FaultyRelay;
  let kubeconfig: string;
  const fast = { attempts: 4, firstPauseMs: 100 };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-transient-'));
    sim = await startSim({ dir: join(dir, 'sim'), speed: 1000, guests: false });
    relay = new FaultyRelay(new URL(sim.url));
    await relay.listen();
    kubeconfig = join(dir, 'relayed-kubeconfig');
    writeFileSync(
      kubeconfig,
      readFileSync(sim.kubeconfigPath, 'utf8').replace(sim.url, `https://127.0.0.1:${relay.port}`),
    );
    const setup = new HostCluster(loadKubeConfig({ kubeconfig }), { logger: silentLogger() });
    await setup.createAll([
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: 'lv-transient', labels: { 'app.kubernetes.io/managed-by': 'labvirt' } },
      },
    ]);
    await setup.close();
  });

  afterAll(async () => {
    await relay?.stop();
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function client(retry = fast) {
    const requests: string[] = [];
    const cluster = new HostCluster(loadKubeConfig({ kubeconfig }), {
      logger: silentLogger(),
      transientRetry: retry,
      onRequest: (verb, kind) => requests.push(`${verb} ${kind}`),
    });
    return { cluster, requests };
  }

  it('records a state on the Namespace although the first connections are reset', async () => {
    const { cluster, requests } = client();
    relay.resetConnections(2);
    await cluster.patchNamespaceMeta('lv-transient', {
      labels: { 'labvirt.io/state': 'preparing' },
    });
    const ns = await cluster.getNamespace('lv-transient');
    expect(ns?.metadata?.labels?.['labvirt.io/state']).toBe('preparing');
    expect(requests.filter((r) => r === 'patch Namespace')).toHaveLength(3);
    await cluster.close();
  });

  it('says why when the network stays broken, instead of a bare "fetch failed"', async () => {
    const { cluster, requests } = client({ attempts: 1, firstPauseMs: 100 });
    relay.resetConnections(1);
    const err = await cluster
      .patchNamespaceMeta('lv-transient', { labels: { 'labvirt.io/state': 'warm' } })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(Error);
    expect(apiErrorMessage(err)).toMatch(/^fetch failed \(.*ECONNRESET/);
    expect(requests).toEqual(['patch Namespace']);
    await cluster.close();
  });

  it('does not repeat a call the API server answered with an error', async () => {
    const { cluster, requests } = client();
    await expect(
      cluster.patchNamespaceMeta('lv-absent', { labels: { 'labvirt.io/state': 'warm' } }),
    ).rejects.toThrow();
    expect(requests).toEqual(['patch Namespace']);
    await cluster.close();
  });

  it('creates a Secret once when the API server is unreachable for a moment', async () => {
    const { cluster, requests } = client();
    await relay.stop();
    const reopened = new Promise<void>((r) => setTimeout(() => r(relay.listen()), 150));
    await cluster.createSecret('lv-transient', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'made-through-a-refusal' },
      stringData: { a: 'b' },
    });
    await reopened;
    expect(requests.filter((r) => r === 'create Secret').length).toBeGreaterThan(1);
    expect((await cluster.readSecret('lv-transient', 'made-through-a-refusal'))?.data?.a).toBe(
      Buffer.from('b').toString('base64'),
    );
    await cluster.close();
  });

  it('repeats an idempotent call the API server answered "unavailable", not a create', async () => {
    const { cluster, requests } = client();
    Object.assign(sim.faults, { errorRate: 1, errorCode: 503 });
    const back = new Promise((r) => setTimeout(r, 150)).then(() => (sim.faults.errorRate = 0));
    try {
      await cluster.patchNamespaceMeta('lv-transient', {
        labels: { 'labvirt.io/state': 'claimed' },
      });
      await back;
      expect(requests.filter((r) => r === 'patch Namespace').length).toBeGreaterThan(1);
      expect((await cluster.getNamespace('lv-transient'))?.metadata?.labels).toMatchObject({
        'labvirt.io/state': 'claimed',
      });

      // A create that is not safe to repeat is made once, and its error reads well.
      requests.length = 0;
      Object.assign(sim.faults, { errorRate: 1, errorCode: 503 });
      const err = await cluster
        .createSecret('lv-transient', {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'not-while-unavailable' },
        })
        .then(
          () => undefined,
          (e: unknown) => e as { message: string; code: number; headers: object },
        );
      expect(requests).toEqual(['create Secret']);
      expect(err?.message).toBe('503: injected fault');
      // The exception is client-node's own: its code and headers are kept.
      expect(err?.code).toBe(503);
      expect(err?.headers).toHaveProperty('content-type');
    } finally {
      sim.faults.errorRate = 0;
      await cluster.close();
    }
  });

  it('makes a throttled create again after the Retry-After the API server names', async () => {
    const { cluster, requests } = client();
    // 429 with `Retry-After: 1`, as API priority and fairness answers: the
    // request was turned away before anything was done, so even a create is
    // made again.
    Object.assign(sim.faults, { errorRate: 1, errorCode: 429 });
    const lifted = new Promise((r) => setTimeout(r, 150)).then(() => (sim.faults.errorRate = 0));
    const started = performance.now();
    try {
      await cluster.createSecret('lv-transient', {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'made-after-throttling' },
        stringData: { a: 'b' },
      });
      await lifted;
      // Asked to wait a second, it did (a doubling pause from 100 ms would not).
      expect(performance.now() - started).toBeGreaterThanOrEqual(950);
      expect(requests).toEqual(['create Secret', 'create Secret']);
      expect(await cluster.readSecret('lv-transient', 'made-after-throttling')).toBeDefined();
    } finally {
      sim.faults.errorRate = 0;
      await cluster.close();
    }
  });

  it('opens a bounded number of connections for a burst of calls', async () => {
    const { cluster } = client();
    const before = relay.accepted;
    const answers = await Promise.all(
      Array.from({ length: 200 }, () => cluster.getNamespace('lv-transient')),
    );
    expect(answers.every((ns) => ns?.metadata?.name === 'lv-transient')).toBe(true);
    expect(relay.accepted - before).toBeLessThanOrEqual(MAX_CALL_CONNECTIONS);
    await cluster.close();
  });
});
