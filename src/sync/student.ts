import { X509Certificate, type KeyObject } from 'node:crypto';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { constants as osConstants } from 'node:os';
import { setTimeout as wait } from 'node:timers/promises';
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
/** The relay's stderr kept for an error message (openssl's last lines say why it ended). */
const RELAY_STDERR_BYTES = 2048;

/**
 * Where the TLS session to a student API server runs (`sync.apiTls`):
 * `guest`, in an `openssl s_client` on the control plane that labvirt starts
 * over its pooled SSH connection and speaks plain HTTP to (no TLS state in
 * labvirt's process); `labvirt`, in labvirt's process over an SSH-forwarded
 * channel to the control plane's 127.0.0.1:6443.
 */
export type StudentApiTls = 'guest' | 'labvirt';

/**
 * The guest's end of a `guest` connection, run with bash as labvirt's login
 * user (no sudo: it needs no privilege): reads the
 * env's CA and labvirt's client certificate and key from stdin (a line of
 * their lengths, then the PEMs), and becomes an `openssl s_client` to the
 * API server on 127.0.0.1:6443 that checks the server's certificate against
 * that CA (and the name `kubernetes`, as kubeadm's carries) and refuses
 * before any byte of the request leaves otherwise; everything after the PEMs
 * on stdin is the HTTP request. The PEMs reach openssl as here-strings on
 * descriptors 3–5 (pipes in bash ≥ 5.1, a deleted temporary file before):
 * the key is left on no disk, and no helper process is left behind. It ends when
 * labvirt closes the channel (stdin's EOF; `-no_ign_eof`) or the server
 * closes the connection. `ps` shows it as `labvirt-sync-relay`. A constant:
 * nothing a student sent is in it.
 */
export const RELAY_SCRIPT = `set -eu
IFS=' ' read -r ca_len id_len
case "$ca_len:$id_len" in *[!0-9:]*|:*|*:) echo "labvirt-sync-relay: bad header" >&2; exit 2 ;; esac
IFS= read -r -N "$ca_len" ca
IFS= read -r -N "$id_len" id
exec 3<<<"$ca" 4<<<"$id" 5<<<"$id"
exec -a labvirt-sync-relay openssl s_client -quiet -no_ign_eof -nocommands \\
  -connect 127.0.0.1:6443 -servername kubernetes -verify_hostname kubernetes -verify_return_error \\
  -CAfile /dev/fd/3 -no-CApath -no-CAstore -cert /dev/fd/4 -key /dev/fd/5
`;

export interface StudentWatchOptions {
  envId: string;
  executor: Executor;
  /** Where TLS runs (default `guest`): see StudentApiTls. */
  tls?: StudentApiTls;
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

/** A request made, not yet sent; `explain` turns its failure into the reason, when there is more to say. */
interface PendingRequest {
  req: ClientRequest;
  explain?: (err: unknown) => Promise<Error>;
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
 * the control plane's 127.0.0.1:6443, reached over labvirt's pooled SSH
 * connection (nothing routes from the host network), authenticated by a
 * client certificate from the env's CA. Each HTTPS request runs TLS either
 * in a relay on the control plane that labvirt starts over SSH and speaks
 * plain HTTP to (`guest`, the default: a held TLS connection in Node costs
 * about 75 KiB of native memory per watched env, the relay's costs labvirt
 * none), or in labvirt over a direct-tcpip channel (`labvirt`).
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
  /** `labvirt` TLS: labvirt's certificate and key. */
  private readonly secureContext?: SecureContext;
  /** `labvirt` TLS: the env's CA's public key, what the API server's certificate must be signed with. */
  private readonly caKey?: KeyObject;
  /** `guest` TLS: what the relay reads first (RELAY_SCRIPT), the PEMs' only copy in labvirt. */
  private readonly relayHeader?: string;
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
    if ((opts.tls ?? 'guest') === 'guest') {
      const id = `${withNewline(client.certPem)}${withNewline(client.keyPem)}`;
      const caPem = withNewline(ca.certPem);
      // Lengths in characters, as bash's `read -N` counts them: PEM is ASCII.
      this.relayHeader = `${caPem.length} ${id.length}\n${caPem}${id}`;
      return;
    }
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
   * One GET to the student API server, HTTP/1.1 over the env's TLS (see
   * StudentApiTls). Resolves with a 200 response; anything else throws.
   */
  private async open(
    target: GuestTarget,
    path: string,
    generation: number,
    silenceMs: number,
  ): Promise<IncomingMessage> {
    const { req, explain } = this.relayHeader
      ? await this.requestThroughRelay(target, path, generation, silenceMs, this.relayHeader)
      : await this.requestOverForward(target, path, generation, silenceMs);
    this.inFlight = req;
    req.once('close', () => {
      if (this.inFlight === req) this.inFlight = undefined;
    });
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', (err) => (explain ? explain(err).then(reject) : reject(err)));
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

  /**
   * `guest` TLS: the relay (RELAY_SCRIPT) started on the control plane over
   * the pooled SSH connection; the request goes to it in plain HTTP behind
   * the PEMs, and comes back decrypted. labvirt holds an SSH session channel
   * per open request and nothing of TLS.
   */
  private async requestThroughRelay(
    target: GuestTarget,
    path: string,
    generation: number,
    silenceMs: number,
    header: string,
  ): Promise<PendingRequest> {
    const channel = await this.opts.executor.relay(target, RELAY_SCRIPT);
    if (!this.current(generation)) {
      channel.close();
      throw new Error('superseded');
    }
    let stderr = '';
    channel.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-RELAY_STDERR_BYTES);
    });
    channel.write(header);
    const req = request({
      host: API_SERVER_NAME,
      path,
      headers: { host: API_SERVER_NAME },
      createConnection: () => channel,
    });
    // An SSH channel has no socket timeout of its own: silence is timed here.
    const silence = setTimeout(
      () => req.destroy(new Error(`no answer in ${silenceMs / 1000} s`)),
      silenceMs,
    );
    silence.unref();
    channel.on('data', () => silence.refresh());
    req.once('close', () => {
      clearTimeout(silence);
      channel.close();
    });
    // A relay that ended before answering says why on its stderr (a refused
    // certificate, the API server not listening, no openssl on the node):
    // its exit status and last words may arrive just after the hang-up.
    const exited = new Promise<number | undefined>((resolve) =>
      channel.once('exit', (code: number | null) => resolve(code ?? undefined)),
    );
    const explain = async (err: unknown) =>
      relayError(err, stderr, await Promise.race([exited, wait(200, undefined, { ref: false })]));
    return { req, explain };
  }

  /**
   * `labvirt` TLS: an SSH channel to the guest's 127.0.0.1:6443, TLS over it
   * with the env's context, HTTP/1.1 over that.
   */
  private async requestOverForward(
    target: GuestTarget,
    path: string,
    generation: number,
    silenceMs: number,
  ): Promise<PendingRequest> {
    const channel = await this.opts.executor.forward(target, '127.0.0.1', 6443);
    if (!this.current(generation)) {
      channel.close();
      throw new Error('superseded');
    }
    const socket = tlsConnect({
      socket: channel,
      secureContext: this.secureContext as SecureContext,
      servername: API_SERVER_NAME,
      // Node cannot check without the CA in the context; checked below instead.
      rejectUnauthorized: false,
    });
    // 'secureConnect' is emitted from within the handshake's completion, before
    // TLS encrypts the request http.request has queued: a refused server is
    // destroyed here and never receives it (test/sync/server-certificate.test.ts).
    socket.once('secureConnect', () => {
      const problem = serverCertificateProblem(
        socket.getPeerX509Certificate(),
        this.caKey as KeyObject,
      );
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
    req.setTimeout(silenceMs, () => req.destroy(new Error(`no answer in ${silenceMs / 1000} s`)));
    return { req };
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

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

/**
 * What a relay's failure means, from openssl's stderr and exit status:
 * the words an operator needs, not openssl's error stack.
 */
export function relayError(err: unknown, stderr: string, exitCode?: number): Error {
  const verify = /verify error:num=\d+:(.*)/.exec(stderr);
  if (verify) return new Error(`the API server's certificate was refused: ${verify[1]?.trim()}`);
  const connect = /connect:errno=(\d+)/.exec(stderr);
  if (connect) {
    const errno = Number(connect[1]);
    const name = Object.entries(osConstants.errno).find(([, n]) => n === errno)?.[0];
    return new Error(`connect to the API server (127.0.0.1:6443): ${name ?? `errno ${errno}`}`);
  }
  // bash's own words when `exec openssl` finds none: "exec: openssl: not found".
  if (exitCode === 127 || /\bopenssl: (command )?not found/.test(stderr))
    return new Error(
      'openssl is not installed on the control plane (the relay needs it; or set sync.apiTls: labvirt)',
    );
  const last = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && l !== 'DONE' && !/^(depth=|verify return:)/.test(l))
    .pop();
  const base = (err as { message?: string })?.message ?? String(err);
  return new Error(last ? `${base} (the relay said: ${last.slice(0, 300)})` : base);
}

function describe(err: unknown): string {
  if (err instanceof ApiStatusError) return `HTTP ${err.code}: ${err.message}`;
  const e = err as { message?: string };
  return e?.message ?? String(err);
}
