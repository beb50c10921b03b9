import { createServer, type Server, type Socket } from 'node:net';
import {
  CoreV1Api,
  KubeConfig,
  makeInformer,
  type Informer,
  type ObjectCache,
  type V1Service,
} from '@kubernetes/client-node';
import type { KeyPairPem } from '../pki/index.js';
import type { Executor, GuestTarget } from '../ssh/index.js';

/** What kubeadm puts in the API server's certificate; the tunnel's own address is not in it. */
const API_SERVER_NAME = 'kubernetes';

export interface StudentWatchOptions {
  envId: string;
  executor: Executor;
  /** The control plane's current IP (it changes when the VM restarts): asked at every (re)connect. */
  controlPlaneIp: () => Promise<string>;
  /** The env's CA. */
  ca: KeyPairPem;
  /** labvirt's client certificate, signed by the env's CA. */
  client: KeyPairPem;
  resyncMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  /** The student's Services, whenever they may have changed (never from a cache that has not listed yet). */
  onServices: (services: readonly V1Service[], relisted: boolean) => void;
  /** The API server answered (after being down or at first), or stopped answering. */
  onReachable: (reachable: boolean, error?: string) => void;
}

/**
 * Watches the Services of one student cluster through its own API server:
 * the control plane's 127.0.0.1:6443, reached by SSH forwarding over
 * labvirt's pooled connection (a loopback listener in this process feeds
 * each HTTPS connection into a direct-tcpip channel; nothing routes from the
 * host network), authenticated by a client certificate from the env's CA.
 *
 * client-node's informer relists on 410 and reconnects after its watch
 * timeout, but any other error stops it for good: then this watcher starts
 * a fresh informer after a backoff (1 s doubling to 30 s by default). A
 * fresh informer also replaces the running one every `resyncMs`, a full
 * re-list that catches an informer that went quiet without an error.
 */
export class StudentClusterWatch {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private informer?: Informer<V1Service> & ObjectCache<V1Service>;
  private generation = 0;
  private timer?: NodeJS.Timeout;
  private retryMs: number;
  private stopped = false;
  private target?: GuestTarget;

  constructor(private readonly opts: StudentWatchOptions) {
    this.retryMs = opts.retryInitialMs;
  }

  async start(): Promise<void> {
    this.server = createServer((sock) => this.tunnel(sock));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, '127.0.0.1', () => resolve());
    });
    this.restart();
  }

  /** One HTTPS connection of client-node → one SSH channel to the guest's 127.0.0.1:6443. */
  private tunnel(sock: Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    const target = this.target;
    if (!target) return void sock.destroy();
    this.opts.executor.forward(target, '127.0.0.1', 6443).then(
      (channel) => {
        if (sock.destroyed) return void channel.close();
        sock.pipe(channel).pipe(sock);
        channel.on('close', () => sock.destroy());
        channel.on('error', () => sock.destroy());
        sock.on('close', () => channel.close());
      },
      () => sock.destroy(),
    );
  }

  private kubeConfig(): KubeConfig {
    const { port } = this.server!.address() as { port: number };
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'student',
          server: `https://127.0.0.1:${port}`,
          caData: b64(this.opts.ca.certPem),
          tlsServerName: API_SERVER_NAME,
        },
      ],
      users: [
        {
          name: 'labvirt-sync',
          certData: b64(this.opts.client.certPem),
          keyData: b64(this.opts.client.keyPem),
        },
      ],
      contexts: [{ name: 'sync', cluster: 'student', user: 'labvirt-sync' }],
      currentContext: 'sync',
    });
    return kc;
  }

  /** Replaces the informer with a fresh one (full list, then watch). */
  private restart(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const old = this.informer;
    this.informer = undefined;
    if (old) void old.stop();
    const generation = ++this.generation;
    const current = () => generation === this.generation && !this.stopped;
    void (async () => {
      try {
        const ip = await this.opts.controlPlaneIp();
        this.target = { envId: this.opts.envId, node: 'control-plane', ip };
      } catch (err) {
        return this.failed(generation, err);
      }
      if (!current()) return;
      const kc = this.kubeConfig();
      const core = kc.makeApiClient(CoreV1Api);
      let listed = false;
      const informer = makeInformer<V1Service>(kc, '/api/v1/services', async () => {
        const list = await core.listServiceForAllNamespaces();
        if (current()) {
          // The informer files the items right after this returns, one callback each:
          // only the whole list is a view of the cluster (a part would delete mirrors).
          setImmediate(() => {
            listed = true;
            this.listed(generation, informer);
          });
        }
        return list;
      });
      const changed = () => {
        if (listed && current()) this.opts.onServices(informer.list(), false);
      };
      informer.on('add', changed);
      informer.on('update', changed);
      informer.on('delete', changed);
      informer.on('error', (err) => this.failed(generation, err));
      this.informer = informer;
      try {
        await informer.start();
      } catch (err) {
        this.failed(generation, err);
      }
    })();
  }

  private listed(generation: number, informer: ObjectCache<V1Service>): void {
    if (generation !== this.generation || this.stopped) return;
    this.retryMs = this.opts.retryInitialMs;
    this.opts.onReachable(true);
    this.opts.onServices(informer.list(), true);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.restart(), this.opts.resyncMs);
    this.timer.unref();
  }

  private failed(generation: number, err: unknown): void {
    if (generation !== this.generation || this.stopped) return;
    const informer = this.informer;
    this.informer = undefined;
    if (informer) void informer.stop();
    this.opts.onReachable(false, describe(err));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.restart(), this.retryMs);
    this.timer.unref();
    this.retryMs = Math.min(this.opts.retryMaxMs, this.retryMs * 2);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    clearTimeout(this.timer);
    const informer = this.informer;
    this.informer = undefined;
    if (informer) await informer.stop();
    for (const s of this.sockets) s.destroy();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }
}

function describe(err: unknown): string {
  const e = err as { code?: number | string; message?: string; body?: unknown };
  if (e?.code && typeof e.code === 'number') return `HTTP ${e.code}`;
  return e?.message ?? String(err);
}
