import { X509Certificate, type KeyObject } from 'node:crypto';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { connect as tlsConnect, createSecureContext, type SecureContext } from 'node:tls';
import type { V1Service, V1ServiceList } from '@kubernetes/client-node';
import type { KeyPairPem } from '../pki/index.js';
import type { Executor, GuestTarget } from '../ssh/index.js';

/** What kubeadm puts in the API server's certificate; the tunnel's own address is not in it. */
const API_SERVER_NAME = 'kubernetes';
/** The extended key usage a TLS server's certificate carries (id-kp-serverAuth). */
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
/** A list that has not answered in this long is given up (and retried with backoff). */
const LIST_TIMEOUT_MS = 30_000;
/**
 * A watch with no byte in this long is taken for dead. API servers send a
 * bookmark about every minute to a watch that allows them; a dead SSH
 * connection is usually found sooner by the pooled connection's keepalives.
 */
const WATCH_SILENCE_MS = 150_000;
/** The server ends each watch after 5–10 minutes (random, as client-go does, so envs do not reconnect in step). */
const WATCH_MIN_SECONDS = 300;

export interface StudentWatchOptions {
  envId: string;
  executor: Executor;
  /** The control plane's current IP (it changes when the VM restarts): asked at every (re)connect. */
  controlPlaneIp: () => Promise<string>;
  /** The env's CA. */
  ca: KeyPairPem;
  /** labvirt's client certificate, signed by the env's CA. */
  client: KeyPairPem;
  /** The watchdog's full relist, about this often (±25 %, so envs do not relist in step). */
  resyncMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  /** The student's Services, whenever they may have changed (never from a cache that has not listed yet). */
  onServices: (services: readonly V1Service[], relisted: boolean) => void;
  /** The API server answered (after being down or at first), or stopped answering. */
  onReachable: (reachable: boolean, error?: string) => void;
}

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: V1Service & { code?: number; message?: string };
}

/** An HTTP answer other than 200, or a watch's ERROR event. */
class ApiStatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Watches the Services of one student cluster through its own API server:
 * the control plane's 127.0.0.1:6443, reached by SSH forwarding over
 * labvirt's pooled connection (each HTTPS request runs TLS straight over a
 * direct-tcpip channel; nothing routes from the host network), authenticated
 * by a client certificate from the env's CA.
 *
 * A lean list-then-watch of its own rather than client-node's informer,
 * because the informer's cost is per env and it runs for every active
 * session: the informer's watch ends after 30 s without data and starts
 * again (a new SSH channel and TLS handshake per env twice a minute), and it
 * carries a KubeConfig, a fetch agent and an object deserializer per env.
 * This one keeps a watch open for minutes with bookmarks, resumes from the
 * last resourceVersion when a watch ends or drops, relists only on 410 (or
 * as the watchdog), and holds one TLS context per env.
 *
 * Failure handling: a request that cannot be made (API server down, VM not
 * running, SSH failing) reports the cluster unreachable and retries with
 * backoff (1 s doubling to 30 s by default), resuming from the last
 * resourceVersion; a watch that was open and ends or drops is resumed at
 * once (after the initial retry delay if it dropped). Every `resyncMs` a
 * full relist replaces the watch, which catches a watch that went quiet
 * without an error.
 */
export class StudentClusterWatch {
  private readonly opts: Omit<StudentWatchOptions, 'ca' | 'client'>;
  private readonly secureContext: SecureContext;
  /** The env's CA's public key: what the API server's certificate must be signed with. */
  private readonly caKey: KeyObject;
  private readonly services = new Map<string, V1Service>();
  /** Where the watch resumes; undefined: list first. */
  private resourceVersion?: string;
  private generation = 0;
  private retryTimer?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private inFlight?: ClientRequest;
  private retryMs: number;
  private stopped = false;

  constructor(options: StudentWatchOptions) {
    // The PEMs live on in the context only: a watch is held per active session, so every kept byte counts a thousand times.
    const { ca, client, ...opts } = options;
    this.opts = opts;
    this.retryMs = opts.retryInitialMs;
    // No `ca` in the context: with the env's CA in the context's store,
    // OpenSSL sends it after labvirt's certificate, and that last handshake
    // flight no longer fits Node's first 1 KiB TLS output buffer, so a 16 KiB
    // one is added and kept for the connection's life; an own store costs
    // about 5 KiB per context as well. The server's certificate is checked
    // against the CA by hand instead (serverCertificateProblem), the moment
    // the handshake is done and before the request leaves (see open()).
    this.secureContext = createSecureContext({ cert: client.certPem, key: client.keyPem });
    this.caKey = new X509Certificate(ca.certPem).publicKey;
  }

  start(): Promise<void> {
    this.run();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdog);
    this.inFlight?.destroy();
    this.inFlight = undefined;
    return Promise.resolve();
  }

  /** Starts a new pass (the previous one, if any, is abandoned). */
  private run(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.inFlight?.destroy();
    this.inFlight = undefined;
    const generation = ++this.generation;
    this.loop(generation).catch((err: unknown) => this.failed(generation, err));
  }

  private current(generation: number): boolean {
    return generation === this.generation && !this.stopped;
  }

  private async loop(generation: number): Promise<void> {
    const ip = await this.opts.controlPlaneIp();
    const target: GuestTarget = { envId: this.opts.envId, node: 'control-plane', ip };
    while (this.current(generation)) {
      if (this.resourceVersion === undefined) await this.list(target, generation);
      if (!this.current(generation)) return;
      const timeoutSeconds = WATCH_MIN_SECONDS + Math.floor(Math.random() * WATCH_MIN_SECONDS);
      const query = new URLSearchParams({
        watch: 'true',
        allowWatchBookmarks: 'true',
        resourceVersion: this.resourceVersion ?? '',
        timeoutSeconds: String(timeoutSeconds),
      });
      const res = await this.open(
        target,
        `/api/v1/services?${query}`,
        generation,
        WATCH_SILENCE_MS,
      );
      if (!this.current(generation)) return void res.destroy();
      this.answered();
      this.armWatchdog();
      try {
        const expired = await this.follow(res, generation);
        // 410: the resourceVersion is older than the server keeps; only a relist can go on.
        if (expired) this.resourceVersion = undefined;
      } catch {
        // An open watch dropped (a proxy, an API server restart): resume after a short pause.
        if (!this.current(generation)) return;
        this.retryTimer = setTimeout(() => this.run(), this.opts.retryInitialMs);
        this.retryTimer.unref();
        this.generation++;
        return;
      }
    }
  }

  /** A full list: the whole picture, handed over as one (a part would delete mirrors). */
  private async list(target: GuestTarget, generation: number): Promise<void> {
    const res = await this.open(target, '/api/v1/services', generation, LIST_TIMEOUT_MS);
    const list = JSON.parse(await readAll(res)) as V1ServiceList;
    if (!this.current(generation)) return;
    this.services.clear();
    for (const s of list.items) this.services.set(keyOf(s), slim(s));
    this.resourceVersion = list.metadata?.resourceVersion ?? '0';
    this.answered();
    this.opts.onServices([...this.services.values()], true);
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.armWatchdog();
  }

  /** At most one relist pending; none while the cluster is unreachable (the backoff rules then). */
  private armWatchdog(): void {
    if (this.watchdog) return;
    const jitter = 0.75 + Math.random() * 0.5;
    this.watchdog = setTimeout(() => this.relist(), this.opts.resyncMs * jitter);
    this.watchdog.unref();
  }

  /** The watchdog: a full relist replaces the watch, whatever it was doing. */
  private relist(): void {
    this.watchdog = undefined;
    if (this.stopped) return;
    this.resourceVersion = undefined;
    this.run();
  }

  /** Applies a watch's events until it ends; true when it ended with 410 Gone. */
  private async follow(res: IncomingMessage, generation: number): Promise<boolean> {
    res.setEncoding('utf8');
    let buffered = '';
    for await (const chunk of res as AsyncIterable<string>) {
      if (!this.current(generation)) {
        res.destroy();
        return false;
      }
      buffered += chunk;
      let newline: number;
      let changed = false;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const event = JSON.parse(line) as WatchEvent;
        if (event.type === 'ERROR') {
          res.destroy();
          if (event.object.code === 410) return true;
          throw new ApiStatusError(event.object.code ?? 500, event.object.message ?? 'watch error');
        }
        const rv = event.object.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
        if (event.type === 'BOOKMARK') continue;
        if (event.type === 'DELETED') this.services.delete(keyOf(event.object));
        else this.services.set(keyOf(event.object), slim(event.object));
        changed = true;
      }
      if (changed) this.opts.onServices([...this.services.values()], false);
    }
    return false;
  }

  /**
   * One GET to the student API server: an SSH channel to the guest's
   * 127.0.0.1:6443, TLS over it with the env's context, HTTP/1.1 over that.
   * Resolves with a 200 response; anything else throws.
   */
  private async open(
    target: GuestTarget,
    path: string,
    generation: number,
    silenceMs: number,
  ): Promise<IncomingMessage> {
    const channel = await this.opts.executor.forward(target, '127.0.0.1', 6443);
    if (!this.current(generation)) {
      channel.close();
      throw new Error('superseded');
    }
    const socket = tlsConnect({
      socket: channel,
      secureContext: this.secureContext,
      servername: API_SERVER_NAME,
      // Node cannot check without the CA in the context; checked below instead.
      rejectUnauthorized: false,
    });
    // 'secureConnect' is emitted from within the handshake's completion, before
    // TLS encrypts the request http.request has queued: a refused server is
    // destroyed here and never receives it (test/sync/server-certificate.test.ts).
    socket.once('secureConnect', () => {
      const problem = serverCertificateProblem(socket.getPeerX509Certificate(), this.caKey);
      if (problem) socket.destroy(new Error(problem));
    });
    socket.once('close', () => channel.close());
    const req = request({
      host: API_SERVER_NAME,
      path,
      // As few bytes as the API server needs (it answers JSON unasked): TLS
      // encrypts this request behind the handshake's last flight, and the two
      // must fit Node's first 1 KiB TLS output buffer (962 bytes for a watch
      // from a 9-digit resourceVersion, measured; 992 with an accept header
      // and the default Host) — past it a 16 KiB buffer is added and kept for
      // the connection's life.
      headers: { host: API_SERVER_NAME },
      createConnection: () => socket,
    });
    this.inFlight = req;
    req.setTimeout(silenceMs, () => req.destroy(new Error(`no answer in ${silenceMs / 1000} s`)));
    req.once('close', () => {
      if (this.inFlight === req) this.inFlight = undefined;
    });
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', reject);
      req.end();
    });
    if (res.statusCode === 200) return res;
    const body = await readAll(res).catch(() => '');
    let message = body.slice(0, 300);
    try {
      message = (JSON.parse(body) as { message?: string }).message ?? message;
    } catch {
      // Not a Status: the raw text says it.
    }
    throw new ApiStatusError(res.statusCode ?? 0, message);
  }

  private answered(): void {
    this.retryMs = this.opts.retryInitialMs;
    this.opts.onReachable(true);
  }

  private failed(generation: number, err: unknown): void {
    if (!this.current(generation)) return;
    this.generation++;
    this.inFlight?.destroy();
    this.inFlight = undefined;
    this.opts.onReachable(false, describe(err));
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.run(), this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.opts.retryMaxMs, this.retryMs * 2);
  }
}

/**
 * Why `cert` is not the env's API server's certificate, or undefined when it
 * is: signed by the env's CA (kubeadm signs apiserver.crt with ca.crt
 * directly), not a CA itself, valid now, for serverAuth, and naming
 * `kubernetes` among its DNS names (as kubeadm's does): what Node's own check
 * would refuse, done by hand because the CA is kept out of the TLS context.
 */
export function serverCertificateProblem(
  cert: X509Certificate | undefined,
  caKey: KeyObject,
  now = new Date(),
): string | undefined {
  if (!cert) return 'the API server sent no certificate';
  const what = `the API server's certificate (${cert.subject.replace(/\n/g, ', ')})`;
  if (!cert.verify(caKey)) return `${what} is not signed by the env's CA`;
  if (cert.ca) return `${what} is a CA certificate`;
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(from <= now.getTime() && now.getTime() <= to))
    return `${what} is not valid now (valid from ${cert.validFrom} to ${cert.validTo})`;
  if (cert.keyUsage && !cert.keyUsage.includes(SERVER_AUTH))
    return `${what} is not for a TLS server (extended key usage ${cert.keyUsage.join(', ')})`;
  if (!cert.checkHost(API_SERVER_NAME, { subject: 'never' }))
    return `${what} is not for ${API_SERVER_NAME}`;
  return undefined;
}

/**
 * What the plan reads of a Service (src/sync/plan.ts: its type, node ports
 * and creation order), nothing more: a real API server's objects carry
 * managedFields, annotations and status, kilobytes each, held for as long as
 * the session lasts.
 */
function slim(s: V1Service): V1Service {
  const exposed = s.spec?.type === 'NodePort' || s.spec?.type === 'LoadBalancer';
  return {
    metadata: {
      namespace: s.metadata?.namespace,
      name: s.metadata?.name,
      creationTimestamp: s.metadata?.creationTimestamp,
    },
    spec: {
      type: s.spec?.type,
      ports: exposed
        ? s.spec?.ports?.map((p) => ({ port: p.port, protocol: p.protocol, nodePort: p.nodePort }))
        : undefined,
    },
  };
}

function keyOf(s: V1Service): string {
  return `${s.metadata?.namespace ?? ''}/${s.metadata?.name ?? ''}`;
}

async function readAll(res: IncomingMessage): Promise<string> {
  res.setEncoding('utf8');
  let body = '';
  for await (const chunk of res as AsyncIterable<string>) body += chunk;
  return body;
}

function describe(err: unknown): string {
  if (err instanceof ApiStatusError) return `HTTP ${err.code}: ${err.message}`;
  const e = err as { message?: string };
  return e?.message ?? String(err);
}
