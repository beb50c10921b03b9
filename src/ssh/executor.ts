import ssh2, {
  type Client,
  type ClientChannel,
  type ParsedKey,
  type PublicKeyAuthMethod,
} from 'ssh2';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { utils } = ssh2;
import type { Logger } from '../log/index.js';
import { guestAlgorithms } from './algorithms.js';
import { BOOTSTRAP, InvalidEnvError, makeBundle } from './bundle.js';
import {
  HostKeyMismatchError,
  HostKeyPins,
  type EnvIdentitySource,
  type EnvSshIdentity,
  type NodeName,
} from './hostkeys.js';
import { preparedSigningKey } from './key-objects.js';
import { parseAuthorizedKey, publicLine } from './keys.js';
import type { GuestResolver } from './resolver.js';

export type { NodeName };

export interface GuestTarget {
  envId: string;
  node: NodeName;
  ip: string;
}

export interface ExecOptions {
  /** Variables for the script; names must match ^[A-Z_][A-Z0-9_]*$. Never shell text. */
  env?: Record<string, string>;
  timeoutMs: number;
  /** SSH login user (default: the executor's user, `labvirt`). */
  user?: string;
  /** Account the script runs as, through `sudo -n -u` (default: the login user). */
  runAs?: string;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

export interface ExecResult {
  exitCode: number | null;
  /** As ssh2 reports it, e.g. `SIGKILL`. */
  signal?: string;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** True when stdout or stderr exceeded the cap (the tail is kept). */
  truncated: boolean;
  durationMs: number;
}

export interface ConnectRetry {
  /** Attempts before giving up (default 10). */
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

export interface ExecutorOptions {
  /**
   * Each env's own login key and its nodes' host keys (production: read from
   * the env's PKI Secret). A node whose host key is known must show exactly
   * that key, whatever its address.
   */
  identity?: EnvIdentitySource;
  /**
   * The login key for envs without an identity of their own (guests labvirt
   * did not render, as in low-level tests); their host keys are pinned on
   * first contact. labvirt's app never sets it.
   */
  privateKey?: string | Buffer;
  /**
   * The public half of the SSH gateway's own key (`ssh.gatewayClientKey`):
   * installStudentKey puts it next to the student's key, so the gateway
   * reaches the student's nodes without any env's key.
   */
  gatewayPublicKey?: string;
  /** Told when a guest shows a host key other than its own (after the audit line). */
  onHostKeyMismatch?: (target: GuestTarget, error: HostKeyMismatchError) => void;
  user?: string;
  resolve: GuestResolver;
  logger?: Logger;
  connectRetry?: Partial<ConnectRetry>;
  /** Per stream (default 1 MiB). */
  maxOutputBytes?: number;
  readyTimeoutMs?: number;
  /**
   * A connection with no command running is closed after this long (default
   * 10 s): warm envs hold no connection, and keepalives only run for
   * connections in use. Host keys stay pinned, so reconnecting is safe.
   */
  idleCloseMs?: number;
}

export interface Executor {
  exec(target: GuestTarget, script: string, opts: ExecOptions): Promise<ExecResult>;
  /** Resolves once the readiness marker exists; throws after timeoutMs. */
  waitReady(target: GuestTarget, opts: { timeoutMs: number; pollMs?: number }): Promise<void>;
  /**
   * Appends the student's key, the gateway's key and the env's own key (the
   * web terminal's hop to a worker) to student's authorized_keys, idempotently.
   */
  installStudentKey(target: GuestTarget, publicKey: string): Promise<void>;
  /** The host key (`ssh-ed25519 AAAA…`) the node must show, when its env's identity names one. */
  hostKeyOf(envId: string, node: NodeName): Promise<string | undefined>;
  /**
   * A TCP stream to `host:port` as the guest sees it (SSH direct-tcpip over
   * the pooled connection), e.g. the student cluster's API on 127.0.0.1:6443.
   */
  forward(target: GuestTarget, host: string, port: number): Promise<ClientChannel>;
  /**
   * A long-lived command's stdin and stdout as one stream (SSH exec over the
   * pooled connection, as the login user through bash, never through sudo),
   * e.g. the student cluster's TLS relay. `script` must be a constant of
   * labvirt's: nothing a student sent may be in it (data goes on stdin). Its
   * stderr is the channel's `stderr`.
   */
  relay(target: GuestTarget, script: string): Promise<ClientChannel>;
  /** Closes the env's connections once idle, keeping its pinned host keys (the env lives on). */
  releaseEnv(envId: string): void;
  /** Closes the env's connections and forgets its host keys (the env is gone). */
  closeEnv(envId: string): void;
  /** Connections open now (for tests and metrics). */
  readonly openConnections: number;
  close(): Promise<void>;
  /** SSH handshakes done so far (for tests and metrics). */
  readonly handshakes: number;
}

const READY_SCRIPT = 'test -f "${LABVIRT_GUEST_ROOT:-}/var/lib/labvirt/ready"\n';

/**
 * Runs as root (with bash, as every script labvirt runs); the keys come on
 * stdin, one per line. It runs on every node of every claim, so it starts
 * few processes: the file's lines are compared in the shell (a whole-line,
 * fixed-string match, as `grep -qxF` did once per key) instead of by a
 * `grep` per key behind a pipe, and `~/.ssh` and the file are made (private,
 * by the umask, then given to student) only when missing: cloud-init made
 * both, with those modes, at the node's boot.
 */
const INSTALL_KEY_SCRIPT = `set -eu
umask 077
h="\${LABVIRT_GUEST_ROOT:-}/home/student"
f="$h/.ssh/authorized_keys"
made=
if [ ! -d "$h/.ssh" ]; then mkdir -p "$h/.ssh"; made=1; fi
if [ ! -e "$f" ]; then : >> "$f"; made=1; fi
mapfile -t have < "$f"
while IFS= read -r line || [ -n "$line" ]; do
  [ -n "$line" ] || continue
  for k in "\${have[@]}"; do [ "$k" != "$line" ] || continue 2; done
  printf '%s\\n' "$line" >> "$f"
  have+=("$line")
done
if [ -n "$made" ] && [ -z "\${LABVIRT_GUEST_ROOT:-}" ]; then chown -R student:student "$h/.ssh"; fi
`;

/**
 * The key install's whole exec request: a constant, as BOOTSTRAP is (nothing
 * a student sent is in it; the keys arrive on stdin as data). The install
 * skips BOOTSTRAP's temp directory, archive and guest-side time limit
 * (mktemp, tar, timeout, rm: four of its six processes on every node of
 * every claim): its script is fixed, reads nothing but stdin and ends when
 * stdin does, and the executor's own time limit closes the channel.
 */
const INSTALL_KEY_AS_ROOT = bashCommand(INSTALL_KEY_SCRIPT);
/** `script` as one exec request: bash -c with the script single-quoted. */
function bashCommand(script: string): string {
  return `/bin/bash -c '${script.replaceAll("'", `'\\''`)}'`;
}
/** As the login user: root logs in without sudo (as BOOTSTRAP's `self`), anyone else goes through it. */
const asRoot = (loginUser: string, command: string) =>
  loginUser === 'root' ? command : `sudo -n ${command}`;
const installKeyCommand = (loginUser: string) => asRoot(loginUser, INSTALL_KEY_AS_ROOT);

const RETRYABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EGUESTUNKNOWN',
]);

function retryable(err: unknown): boolean {
  if (err instanceof HostKeyMismatchError) return false;
  const e = err as { code?: string; level?: string; message?: string };
  if (e.code && RETRYABLE.has(e.code)) return true;
  // While a VM boots, sshd may be up before cloud-init has written the keys.
  if (e.level === 'client-authentication' || e.level === 'client-timeout') return true;
  return /handshake|timed out|Connection lost/i.test(e.message ?? '');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** OpenSSH's sshd allows 10 sessions per connection (MaxSessions); stay below. */
const MAX_CHANNELS = 8;

interface Pooled {
  client: Client;
  envId: string;
  active: number;
  waiting: (() => void)[];
  /** Closes the connection once it is idle (set when idle, or when released). */
  idleTimer?: NodeJS.Timeout;
  /** Close as soon as the last command ends (the env was released). */
  releasing?: boolean;
  /**
   * Held streams open on it (a student-cluster watch: a forward or a relay).
   * They keep the connection from the idle close, but take no command slot:
   * sshd's MaxSessions counts sessions, not direct-tcpip channels, and an
   * env holds at most one relay session (two while a relist hands over), so
   * MAX_CHANNELS commands and the relays stay within OpenSSH's 10.
   */
  held?: number;
  /** Takes the connection out of the pool, so no new command picks it. */
  forget?: () => void;
}

async function acquire(p: Pooled): Promise<void> {
  while (p.active >= MAX_CHANNELS) await new Promise<void>((r) => p.waiting.push(r));
  p.active++;
  clearTimeout(p.idleTimer);
  p.idleTimer = undefined;
}

export function createExecutor(options: ExecutorOptions): Executor {
  const loginUser = options.user ?? 'labvirt';
  const retry: ConnectRetry = {
    attempts: 10,
    initialDelayMs: 200,
    maxDelayMs: 5000,
    ...options.connectRetry,
  };
  const maxOutput = options.maxOutputBytes ?? 1024 * 1024;
  const idleCloseMs = options.idleCloseMs ?? 10_000;
  const log = options.logger;
  const pins = new HostKeyPins();
  const pool = new Map<string, Promise<Pooled>>();
  if (!options.identity && !options.privateKey) {
    throw new Error('the executor needs env identities (or a fallback private key)');
  }
  let fallbackPublic: string | undefined;
  if (options.privateKey) {
    const parsed = utils.parseKey(options.privateKey);
    if (parsed instanceof Error) throw new Error(`executor private key: ${parsed.message}`);
    fallbackPublic = publicLine(parsed);
  }
  let gatewayPublic: string | undefined;
  if (options.gatewayPublicKey) {
    const parsed = parseAuthorizedKey(options.gatewayPublicKey);
    if (!parsed) throw new Error('gateway public key: not an OpenSSH public key');
    gatewayPublic = publicLine(parsed);
  }

  type Identity = Pick<EnvSshIdentity, 'privateKey' | 'publicKey' | 'hostKeys'>;
  const fallbackIdentity: Identity | undefined = options.privateKey
    ? { privateKey: String(options.privateKey), publicKey: fallbackPublic as string, hostKeys: {} }
    : undefined;

  /** The env's login key and host keys; without an identity source, the fallback key and none. */
  async function identityOf(envId: string): Promise<Identity> {
    if (options.identity) return options.identity(envId);
    return fallbackIdentity as Identity;
  }

  // Every claim connects to each node of its env: handed the key as text,
  // ssh2 would parse it and OpenSSL decode it again at every handshake
  // (key-objects.ts). Kept beside the identity object the source caches, so
  // a key lives exactly as long as its env's identity is remembered.
  const loginKeys = new WeakMap<Identity, ParsedKey>();
  function loginKeyOf(identity: Identity, envId: string): ParsedKey {
    let key = loginKeys.get(identity);
    if (!key) {
      key = preparedSigningKey(identity.privateKey, `the SSH key of env ${envId}`);
      loginKeys.set(identity, key);
    }
    return key;
  }
  let handshakes = 0;
  let open = 0;
  let closed = false;

  function reportMismatch(target: GuestTarget, error: HostKeyMismatchError): void {
    log?.error(
      {
        audit: 'ssh.hostkey.mismatch',
        envId: target.envId,
        node: target.node,
        ip: target.ip,
        expected: error.pinned,
        offered: error.offered,
      },
      'guest host key mismatch: refused to connect; the env is reported broken',
    );
    try {
      options.onHostKeyMismatch?.(target, error);
    } catch (err) {
      log?.warn({ err: (err as Error).message }, 'host key mismatch listener failed');
    }
  }

  function release(p: Pooled): void {
    p.active--;
    const next = p.waiting.shift();
    if (next) return next();
    closeWhenUnused(p);
  }

  /** With no command and no forwarded stream left, the connection closes (now, or once idle). */
  function closeWhenUnused(p: Pooled): void {
    const inUse = () => p.active > 0 || (p.held ?? 0) > 0;
    if (inUse()) return;
    if (p.releasing) {
      p.client.end();
      return;
    }
    clearTimeout(p.idleTimer);
    p.idleTimer = setTimeout(() => {
      if (inUse()) return;
      p.forget?.();
      p.client.end();
    }, idleCloseMs);
    p.idleTimer.unref();
  }

  async function connectOnce(target: GuestTarget, user: string): Promise<Pooled> {
    const identity = await identityOf(target.envId);
    const expectedHostKey = identity.hostKeys[target.node];
    const started = Date.now();
    return new Promise((resolve, reject) => {
      let endpoint: { host: string; port: number };
      let auth: PublicKeyAuthMethod;
      try {
        endpoint = options.resolve(target.ip, 22);
        auth = { type: 'publickey', username: user, key: loginKeyOf(identity, target.envId) };
      } catch (err) {
        reject(err);
        return;
      }
      const client = new ssh2.Client();
      let mismatch: HostKeyMismatchError | undefined;
      client.once('ready', () => {
        // A claim connects to every node of its env: how long that takes is
        // where an operator looks when claims are slow.
        log?.debug({ ...target, connectMs: Date.now() - started }, 'guest connected');
        handshakes++;
        open++;
        client.once('close', () => open--);
        client.removeAllListeners('error');
        client.on('error', (err) =>
          log?.debug({ err: err.message, ...target }, 'guest connection error'),
        );
        resolve({ client, envId: target.envId, active: 0, waiting: [] });
      });
      // `on`, not `once`: ssh2 can report a second error (e.g. "Connection lost
      // before handshake" after a timeout), and an unheard one crashes the process.
      client.on('error', (err) => {
        client.destroy();
        reject(mismatch ?? err);
      });
      client.connect({
        host: endpoint.host,
        port: endpoint.port,
        username: user,
        // A parsed key goes through an auth list (`privateKey` takes only text).
        authHandler: [auth],
        readyTimeout: options.readyTimeoutMs ?? 10_000,
        keepaliveInterval: 15_000,
        // The cheapest safe key exchange, and only the pinned host key's type.
        algorithms: guestAlgorithms(expectedHostKey),
        hostVerifier: (key: Buffer) => {
          mismatch = pins.check(target.envId, target.node, key, expectedHostKey, target.ip);
          if (mismatch) reportMismatch(target, mismatch);
          return mismatch === undefined;
        },
      });
      // Without it, a small write that follows another before the guest
      // acknowledged the first waits for that acknowledgement, which the
      // guest delays up to 40 ms when it has nothing to send: ssh2 writes
      // each message on its own, so the handshake and every command paid such
      // waits. Against OpenSSH's sshd: connect → ready p50 75.9 → 34.3 ms
      // (bench/ssh-latency.bench.ts; docs/ssh.md "Nagle's algorithm").
      client.setNoDelay(true);
    });
  }

  async function connectWithRetry(target: GuestTarget, user: string): Promise<Pooled> {
    let delay = retry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await connectOnce(target, user);
      } catch (err) {
        if (closed || attempt >= retry.attempts || !retryable(err)) throw err;
        log?.debug(
          { ...target, attempt, err: (err as Error).message },
          'guest not reachable yet, retrying',
        );
        await sleep(delay);
        delay = Math.min(retry.maxDelayMs, delay * 2);
      }
    }
  }

  function connection(target: GuestTarget, user: string): Promise<Pooled> {
    if (closed) return Promise.reject(new Error('executor closed'));
    const key = `${target.envId}|${target.node}|${target.ip}|${user}`;
    let p = pool.get(key);
    if (!p) {
      p = connectWithRetry(target, user);
      pool.set(key, p);
      const forget = () => {
        if (pool.get(key) === p) pool.delete(key);
      };
      p.then(
        (c) => {
          c.forget = forget;
          c.client.once('close', forget);
        },
        () => {
          if (pool.get(key) === p) pool.delete(key);
        },
      );
    }
    return p;
  }

  function dropConnection(target: GuestTarget, user: string, pooled: Pooled) {
    const key = `${target.envId}|${target.node}|${target.ip}|${user}`;
    pool.delete(key);
    pooled.client.end();
  }

  function openExec(client: Client, command: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      client.exec(command, (err, stream) => (err ? reject(err) : resolve(stream)));
    });
  }

  async function exec(target: GuestTarget, script: string, opts: ExecOptions): Promise<ExecResult> {
    const user = opts.user ?? loginUser;
    const bundle = makeBundle({
      script,
      env: opts.env ?? {},
      user: opts.runAs && opts.runAs !== user ? opts.runAs : 'self',
      // The guest-side limit is a backstop a little after ours.
      timeoutSeconds: opts.timeoutMs / 1000 + 2,
    });
    return execCommand(target, user, BOOTSTRAP, bundle, opts);
  }

  /** Runs one of labvirt's constant exec requests with `stdin` as its input. */
  async function execCommand(
    target: GuestTarget,
    user: string,
    command: string,
    stdin: Buffer | string,
    opts: ExecOptions,
  ): Promise<ExecResult> {
    if (opts.signal?.aborted) throw abortError(opts.signal);
    const started = Date.now();
    let stream: ClientChannel | undefined;
    let pooled: Pooled | undefined;
    for (let attempt = 0; !stream; attempt++) {
      pooled = await connection(target, user);
      await acquire(pooled);
      try {
        stream = await openExec(pooled.client, command);
      } catch (err) {
        release(pooled);
        // A pooled connection can die between uses: one fresh try.
        dropConnection(target, user, pooled);
        if (attempt > 0) throw err;
      }
    }
    const held = pooled as Pooled;
    return run(stream, stdin, opts, started).finally(() => release(held));
  }

  function run(
    stream: ClientChannel,
    stdin: Buffer | string,
    opts: ExecOptions,
    started: number,
  ): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const out = new Capped(maxOutput);
      const err = new Capped(maxOutput);
      let timedOut = false;
      let exitCode: number | null = null;
      let exitSignal: string | undefined;
      let aborted = false;
      const signal = (name: string) => {
        try {
          stream.signal(name);
        } catch {
          /* channel already gone */
        }
      };
      const kill = () => {
        // TERM lets the guest-side wrapper end the script's whole process group.
        signal('TERM');
        // If the guest does not close the channel by itself, we do.
        setTimeout(() => {
          signal('KILL');
          stream.close();
        }, 1000).unref();
      };
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, opts.timeoutMs);
      const onAbort = () => {
        aborted = true;
        kill();
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (chunk: Buffer) => {
        out.push(chunk);
        opts.onStdout?.(chunk);
      });
      stream.stderr.on('data', (chunk: Buffer) => {
        err.push(chunk);
        opts.onStderr?.(chunk);
      });
      stream.on('exit', (code: number | null, signal?: string) => {
        if (typeof code === 'number') exitCode = code;
        else if (signal) exitSignal = signal;
      });
      stream.on('close', () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (aborted && opts.signal) {
          reject(abortError(opts.signal));
          return;
        }
        resolve({
          exitCode: timedOut ? null : exitCode,
          ...(exitSignal || timedOut ? { signal: exitSignal ?? 'SIGKILL' } : {}),
          stdout: out.text(),
          stderr: err.text(),
          timedOut,
          truncated: out.truncated || err.truncated,
          durationMs: Date.now() - started,
        });
      });
      stream.end(stdin);
    });
  }

  async function waitReady(target: GuestTarget, opts: { timeoutMs: number; pollMs?: number }) {
    const deadline = Date.now() + opts.timeoutMs;
    let last = 'not checked yet';
    while (Date.now() < deadline) {
      try {
        const r = await exec(target, READY_SCRIPT, {
          timeoutMs: Math.min(30_000, Math.max(1000, deadline - Date.now())),
        });
        if (r.exitCode === 0) return;
        last = 'readiness marker not written yet';
      } catch (err) {
        if (err instanceof HostKeyMismatchError) throw err;
        last = (err as Error).message;
      }
      await sleep(Math.min(opts.pollMs ?? 1000, Math.max(0, deadline - Date.now())));
    }
    throw new Error(
      `${target.node} of env ${target.envId} not ready after ${opts.timeoutMs} ms: ${last}`,
    );
  }

  async function installStudentKey(target: GuestTarget, publicKey: string) {
    const lines = publicKey.split(/\r?\n/).filter((l) => l.trim());
    const parsed = lines.length === 1 ? parseAuthorizedKey(lines[0] as string) : undefined;
    if (!parsed || /^\S*(command|environment)=/.test((lines[0] as string).trim())) {
      throw new InvalidEnvError('not a single OpenSSH public key');
    }
    // The gateway logs in as student with its own key; the web terminal's hop
    // to a worker, with the env's own key (which already opens `labvirt`).
    const { publicKey: envPublic } = await identityOf(target.envId);
    const keys = [
      `${publicLine(parsed)} labvirt-student`,
      ...(gatewayPublic ? [`${gatewayPublic} labvirt-gateway`] : []),
      `${envPublic} labvirt-env`,
    ].join('\n');
    const r = await execCommand(target, loginUser, installKeyCommand(loginUser), `${keys}\n`, {
      timeoutMs: 30_000,
    });
    if (r.exitCode !== 0) {
      throw new Error(
        `installing the student key on ${target.node} failed (exit ${r.exitCode}): ${r.stderr.trim().slice(-300)}`,
      );
    }
  }

  async function hostKeyOf(envId: string, node: NodeName) {
    return (await identityOf(envId)).hostKeys[node];
  }

  /** A stream held on the pooled connection, beside its commands; the idle close waits for it. */
  async function hold(
    target: GuestTarget,
    open: (client: Client, done: (err?: Error, channel?: ClientChannel) => void) => void,
  ): Promise<ClientChannel> {
    const pooled = await connection(target, loginUser);
    pooled.held = (pooled.held ?? 0) + 1;
    clearTimeout(pooled.idleTimer);
    pooled.idleTimer = undefined;
    const done = () => {
      pooled.held = (pooled.held ?? 1) - 1;
      closeWhenUnused(pooled);
    };
    return new Promise<ClientChannel>((resolve, reject) => {
      open(pooled.client, (err, channel) => {
        if (err || !channel) {
          done();
          reject(err ?? new Error('no channel'));
          return;
        }
        channel.once('close', done);
        resolve(channel);
      });
    });
  }

  function forward(target: GuestTarget, host: string, port: number) {
    return hold(target, (client, done) =>
      client.forwardOut('127.0.0.1', 0, host, port, (err, channel) => done(err, channel)),
    );
  }

  function relay(target: GuestTarget, script: string) {
    // Not as root: a relay reads its secrets from stdin and connects to a
    // loopback port, which needs no privilege. sudo would add a process, a
    // PAM session and an auth-log line on the student's node at every request.
    const command = bashCommand(script);
    return hold(target, (client, done) =>
      client.exec(command, (err, channel) => done(err, channel)),
    );
  }

  function releaseEnv(envId: string) {
    for (const [key, p] of pool) {
      if (!key.startsWith(`${envId}|`)) continue;
      pool.delete(key);
      p.then(
        (c) => {
          c.releasing = true;
          clearTimeout(c.idleTimer);
          if (c.active === 0) c.client.end();
        },
        () => undefined,
      );
    }
  }

  function closeEnv(envId: string) {
    for (const [key, p] of pool) {
      if (!key.startsWith(`${envId}|`)) continue;
      pool.delete(key);
      p.then(
        (c) => c.client.end(),
        () => undefined,
      );
    }
    pins.forget(envId);
  }

  async function close() {
    closed = true;
    const all = [...pool.values()];
    pool.clear();
    await Promise.all(
      all.map((p) =>
        p.then(
          (c) => c.client.end(),
          () => undefined,
        ),
      ),
    );
  }

  return {
    exec,
    waitReady,
    installStudentKey,
    hostKeyOf,
    forward,
    relay,
    releaseEnv,
    closeEnv,
    close,
    get handshakes() {
      return handshakes;
    },
    get openConnections() {
      return open;
    },
  };
}

function abortError(signal: AbortSignal): Error {
  const e = new Error(`aborted: ${String(signal.reason ?? 'signal')}`);
  e.name = 'AbortError';
  return e;
}

/** Keeps the last `max` bytes of a stream. */
class Capped {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly max: number) {}
  push(chunk: Buffer) {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.max && this.chunks.length > 0) {
      this.truncated = true;
      const first = this.chunks[0] as Buffer;
      const excess = this.size - this.max;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }
  text() {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}
