import { Watch, type KubeConfig } from './client-node.js';
import type { Logger } from '../log/index.js';

/** The part of an object every watched kind has. */
export interface WatchedObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export interface SharedWatchOptions<T> {
  kubeConfig: KubeConfig;
  /** Kind name for logs and request counting (`list VirtualMachineInstance`). */
  kind: string;
  /** The collection's path across all namespaces, e.g. `/api/v1/namespaces`. */
  path: string;
  labelSelector?: string;
  /**
   * Cluster-scoped kind: objects are then filed (and waited on) under their
   * own name, so a Namespace is found with `inNamespace(<its name>)`.
   */
  clusterScoped?: boolean;
  /** One full read of the collection (the relist). */
  list: () => Promise<{ items: WatchedObject[]; metadata?: { resourceVersion?: string } }>;
  /** What is kept of each object: a small view keeps the memory per env low. */
  project: (obj: WatchedObject) => T;
  /** The watchdog: a full relist this often, whatever the watch says (catches missed events). */
  relistMs: number;
  /** How long the server keeps one stream open before the watch resumes on a new one (default 15 min). */
  streamSeconds?: number;
  /** First pause before listing again after an error; doubles up to 30 s. */
  restartDelayMs?: number;
  logger: Logger;
  /**
   * The process's account of the API server being out of reach: told of
   * every failure, and asked whether the failure's warning is already
   * written (then the watch's own lines are debug lines).
   */
  outage?: {
    failed(err: unknown): void;
    levelFor(err: unknown, normal: 'warn'): 'warn' | 'debug' | 'error' | 'info';
  };
  /** Called once per list and per watch request opened (metrics). */
  onRequest?: (verb: 'list' | 'watch', kind: string) => void;
}

interface Entry<T> {
  resourceVersion: string;
  view: T;
}

/** Why a watch stream ended. */
type WatchEnd = 'relist' | 'resume';

const MAX_RESTART_DELAY_MS = 30_000;
/** How long `stop()` waits for the stream to end. */
const STOP_WAIT_MS = 1000;
/** A stream that ends sooner than this is resumed only after the restart delay (no tight loop). */
const SHORT_STREAM_MS = 1000;
/**
 * How long a stream may stay silent before client-node cuts it. The server
 * sends a BOOKMARK at least every minute (`allowWatchBookmarks`), so a longer
 * silence means a dead connection.
 */
const INACTIVITY_MS = 5 * 60_000;
/** Asked of the server; it ends the stream then and the watch resumes from its last version. */
const SERVER_TIMEOUT_SECONDS = 15 * 60;

/**
 * One list-and-watch of a kind across every namespace, shared by every job
 * that waits on objects of that kind (one connection instead of one poll per
 * env). It keeps a projection of each object by namespace and wakes whoever
 * waits on a namespace when something there changes.
 *
 * client-node's informer stops on any error but 410 and a timeout, and a
 * watch can silently miss events (kubernetes-client/javascript #596, #958),
 * so this one restarts itself after errors (with backoff), relists on 410,
 * and relists every `relistMs` as a watchdog: a change the stream missed is
 * found by comparing the list with the cache, and its waiters are woken.
 */
export class SharedWatch<T> {
  private readonly byNamespace = new Map<string, Map<string, Entry<T>>>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly changeListeners = new Set<(namespace: string) => void>();
  private readonly watch: Watch;
  private readonly log: Logger;
  private resourceVersion = '';
  private stream: AbortController | undefined;
  private relistDue = false;
  private stopped = true;
  private relistTimer: NodeJS.Timeout | undefined;
  private wakeSleep: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private syncedOnce!: Promise<void>;
  private markSynced!: () => void;
  private relists = 0;
  private restarts = 0;
  /** When the current run of failures began (warned once), until a list succeeds. */
  private failingSince: number | undefined;
  /** Whether that run's first line was a warning (else the outage's own warning said it). */
  private failingWarned = false;

  constructor(private readonly opts: SharedWatchOptions<T>) {
    this.watch = new Watch(opts.kubeConfig);
    // Private in the typings, a plain field at run time (client-node 2.0.1):
    // its 30 s default would cut every quiet stream between bookmarks.
    (this.watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = INACTIVITY_MS;
    this.log = opts.logger.child({ watch: opts.kind });
    this.resetSynced();
  }

  /** Starts listing and watching; `synced()` resolves once the first list is in. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.relistTimer = setInterval(() => this.requestRelist(), this.opts.relistMs);
    this.relistTimer.unref();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.relistTimer);
    this.stream?.abort();
    this.wakeSleep?.();
    // A request still being made cannot be aborted (client-node hands out
    // the stream's controller only once it is open); it ends with the
    // connections (HostCluster.close) and finds the watch stopped.
    const loop = this.loop;
    this.loop = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([loop, new Promise((r) => (timer = setTimeout(r, STOP_WAIT_MS)))]);
    clearTimeout(timer);
    this.resourceVersion = '';
    this.resetSynced();
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Resolves once the cache holds a full list (at start, after which it stays current). */
  synced(): Promise<void> {
    return this.syncedOnce;
  }

  /** Full lists so far (the first one included): for tests and metrics. */
  get relistCount(): number {
    return this.relists;
  }

  /** Times the stream was opened again after it ended or failed. */
  get restartCount(): number {
    return this.restarts;
  }

  /** The watched objects of a namespace, as projected. */
  inNamespace(namespace: string): T[] {
    return [...(this.byNamespace.get(namespace)?.values() ?? [])].map((e) => e.view);
  }

  /** Every namespace (for a cluster-scoped kind: every object's name) with something watched in it. */
  namespaces(): string[] {
    return [...this.byNamespace.keys()];
  }

  get(namespace: string, name: string): T | undefined {
    return this.byNamespace.get(namespace)?.get(name)?.view;
  }

  /**
   * Resolves at the next change seen in `namespace` (an event, or a relist
   * that found a difference), or after `maxWaitMs` at the latest. Ask before
   * reading the cache, then await: a change in between is not lost.
   */
  nextChange(namespace: string, maxWaitMs: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(namespace);
      if (!set) this.waiters.set(namespace, (set = new Set()));
      const wake = () => {
        clearTimeout(timer);
        const current = this.waiters.get(namespace);
        current?.delete(wake);
        if (current?.size === 0) this.waiters.delete(namespace);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, maxWaitMs));
      // A wait for a change must not keep the process up: a teardown waiting
      // here when labvirt stopped held `labvirt dev` 60 s after Ctrl-C.
      timer.unref();
      set.add(wake);
    });
  }

  /**
   * Calls `listener` with the namespace at every change seen (an event, or a
   * relist that found a difference), for whoever follows every namespace
   * rather than waiting on one. Returns the unsubscribe function.
   */
  onChange(listener: (namespace: string) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Lists again at once (the watchdog does this every `relistMs`). */
  requestRelist(): void {
    this.relistDue = true;
    this.stream?.abort();
    this.wakeSleep?.();
  }

  private resetSynced(): void {
    this.syncedOnce = new Promise((r) => (this.markSynced = r));
  }

  private async run(): Promise<void> {
    let delay = 0;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion || this.relistDue) await this.relist();
        const opened = Date.now();
        const end = await this.watchOnce();
        if (this.stopped) break;
        if (end === 'relist') this.resourceVersion = '';
        delay = 0;
        this.restarts++;
        // A server that ends streams at once must not make this spin.
        if (end === 'resume' && Date.now() - opened < SHORT_STREAM_MS)
          await this.sleep(this.opts.restartDelayMs ?? 1000);
      } catch (err) {
        if (this.stopped) break;
        // After an error, what was missed is unknown: start over from a list.
        this.resourceVersion = '';
        delay = Math.min(
          MAX_RESTART_DELAY_MS,
          delay > 0 ? delay * 2 : (this.opts.restartDelayMs ?? 1000),
        );
        this.restarts++;
        const line = { err: err instanceof Error ? err.message : String(err), retryInMs: delay };
        // One warning an outage (the API server down, a network cut), not one
        // a retry: the rest are debug lines until a list succeeds again. An
        // API server out of reach is the process's one warning, not each watch's.
        this.opts.outage?.failed(err);
        if (this.failingSince === undefined) {
          this.failingSince = Date.now();
          const level = this.opts.outage?.levelFor(err, 'warn') ?? 'warn';
          this.failingWarned = level === 'warn';
          this.log[level](line, 'watch failed; listing again (until it works: debug level)');
        } else {
          this.log.debug(line, 'watch failed; listing again');
        }
        await this.sleep(delay);
      }
    }
  }

  private async relist(): Promise<void> {
    this.relistDue = false;
    this.opts.onRequest?.('list', this.opts.kind);
    const list = await this.opts.list();
    this.relists++;
    if (this.failingSince !== undefined) {
      const seconds = (Date.now() - this.failingSince) / 1000;
      this.failingSince = undefined;
      this.log[this.failingWarned ? 'info' : 'debug'](
        { outageSeconds: Math.round(seconds * 10) / 10 },
        'watch working again',
      );
    }
    const fresh = new Map<string, Map<string, Entry<T>>>();
    const changed = new Set<string>();
    for (const obj of list.items) {
      const namespace = this.groupOf(obj);
      const name = obj.metadata?.name ?? '';
      const resourceVersion = obj.metadata?.resourceVersion ?? '';
      let names = fresh.get(namespace);
      if (!names) fresh.set(namespace, (names = new Map()));
      const old = this.byNamespace.get(namespace)?.get(name);
      if (old && old.resourceVersion === resourceVersion) names.set(name, old);
      else {
        names.set(name, { resourceVersion, view: this.opts.project(obj) });
        changed.add(namespace);
      }
    }
    for (const [namespace, names] of this.byNamespace) {
      const now = fresh.get(namespace);
      if (!now || [...names.keys()].some((n) => !now.has(n))) changed.add(namespace);
    }
    this.byNamespace.clear();
    for (const [namespace, names] of fresh) this.byNamespace.set(namespace, names);
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.markSynced();
    for (const namespace of changed) this.wake(namespace);
  }

  /** Streams changes from `resourceVersion` until the stream ends; says how to go on. */
  private watchOnce(): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve, reject) => {
      let expired = false;
      let ended = false;
      const onEvent = (type: string, obj: WatchedObject & { code?: number }) => {
        if (type === 'ERROR') {
          if (obj.code === 410) expired = true;
          return;
        }
        const rv = obj.metadata?.resourceVersion;
        if (type === 'BOOKMARK') {
          if (rv) this.resourceVersion = rv;
          return;
        }
        const namespace = this.groupOf(obj);
        const name = obj.metadata?.name ?? '';
        if (type === 'DELETED') {
          const names = this.byNamespace.get(namespace);
          names?.delete(name);
          if (names?.size === 0) this.byNamespace.delete(namespace);
        } else if (type === 'ADDED' || type === 'MODIFIED') {
          let names = this.byNamespace.get(namespace);
          if (!names) this.byNamespace.set(namespace, (names = new Map()));
          names.set(name, { resourceVersion: rv ?? '', view: this.opts.project(obj) });
        } else return;
        if (rv) this.resourceVersion = rv;
        this.wake(namespace);
      };
      const onDone = (err: unknown) => {
        ended = true;
        this.stream = undefined;
        if (this.stopped || this.relistDue || expired || isGone(err)) return resolve('relist');
        if (!err || isTimeout(err)) return resolve('resume');
        reject(err instanceof Error ? err : new Error(String(err)));
      };
      this.opts.onRequest?.('watch', this.opts.kind);
      this.watch
        .watch(
          this.opts.path,
          {
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds: this.opts.streamSeconds ?? SERVER_TIMEOUT_SECONDS,
            ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}),
          },
          onEvent,
          onDone,
        )
        .then((controller) => {
          if (ended) return;
          this.stream = controller;
          // Stopped, or a relist asked for, while the request was being made.
          if (this.stopped || this.relistDue) controller.abort();
        }, reject);
    });
  }

  private groupOf(obj: WatchedObject): string {
    return (this.opts.clusterScoped ? obj.metadata?.name : obj.metadata?.namespace) ?? '';
  }

  private wake(namespace: string): void {
    for (const listener of this.changeListeners) {
      try {
        listener(namespace);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, namespace }, 'change listener failed');
      }
    }
    const set = this.waiters.get(namespace);
    if (!set) return;
    for (const wake of [...set]) wake();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleep = () => {
        this.wakeSleep = undefined;
        done();
      };
    });
  }
}

function isGone(err: unknown): boolean {
  const e = err as { statusCode?: number; code?: number } | undefined;
  return e?.statusCode === 410 || e?.code === 410;
}

function isTimeout(err: unknown): boolean {
  return (err as { name?: string } | undefined)?.name === 'TimeoutError';
}
