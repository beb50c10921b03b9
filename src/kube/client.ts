import {
  ApiException,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type ApiConstructor,
  type ApiType,
  type CoreV1Event,
  type KubernetesObject,
  type V1Namespace,
  type V1Secret,
} from './client-node.js';
import { createHash } from 'node:crypto';
import { Agent } from 'undici';
import type { Logger } from '../log/index.js';
import { toClientModel } from './client-model.js';
import { DEFAULT_TRANSIENT_RETRY, retryTransient, type TransientRetry } from './transient.js';
import { SharedWatch, type WatchedObject } from './watch.js';
import { KubeApiReachability, apiErrorMessage, observedApi } from './reachability.js';

export { apiErrorMessage };

export interface KubeConnectionSettings {
  kubeconfig?: string;
  context?: string;
}

/** An undici dispatcher (ours, or client-node's proxy agent), closed at shutdown. */
interface Closable {
  close(): Promise<void>;
  destroy(): Promise<void>;
}
type CreateDispatcher = (cluster: unknown, agentOptions: Record<string, unknown>) => unknown;

/** A shared dispatcher and what must be closed with it. */
interface SharedDispatcher {
  dispatcher: unknown;
  closables: Closable[];
}

/** The connection settings a dispatcher is built from; equal keys share one dispatcher. */
const DISPATCHER_FIELDS = [
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'rejectUnauthorized',
  'servername',
] as const;

/**
 * At most this many connections to one API server carry ordinary calls
 * (watches have their own, see KeepAliveKubeConfig). client-go keeps 25 idle
 * connections per host over HTTP/1.1; more in flight only queue on the
 * server. Without a cap, undici's pool opens a connection for every call
 * made while the others are busy and keeps each open for the server's
 * keep-alive time with its TLS state and a 64 KiB read buffer: 50–100 KiB
 * per call of the largest burst (300 calls at once left 300 open).
 */
export const MAX_CALL_CONNECTIONS = 16;

/**
 * How long an idle connection to the API server is kept. kube-apiserver
 * sends no Keep-Alive hint, so undici would use its own default, 4 s: a
 * call after a pause of a few seconds (a claim, a check) would pay a new TLS
 * handshake. kube-apiserver closes idle connections after 90 s
 * (`IdleTimeout` of its secure serving), so 30 s stays well clear of a
 * request racing the server's close.
 */
export const IDLE_CONNECTION_MS = 30_000;

/** A watch (`?watch=true`, or `watch=1`) holds its connection for minutes: it never waits behind calls. */
function isWatchPath(path: string): boolean {
  const query = path.indexOf('?');
  if (query < 0) return false;
  const watch = new URLSearchParams(path.slice(query + 1)).get('watch');
  return watch === 'true' || watch === '1';
}

/**
 * A KubeConfig whose API calls share keep-alive connections.
 *
 * client-node 2.0.1 builds a new undici Agent for every request in
 * `applySecurityAuthentication` (its `createDispatcher` is not cached, unlike
 * `createAgent`), so every Kubernetes call pays a full TLS handshake and
 * leaves an idle socket behind (thousands during a pool fill). Here the
 * dispatcher is built once per distinct cluster + TLS settings and reused;
 * settings that change (a rotated client certificate) get a new one. Worth
 * reporting upstream: caching in `createDispatcher` would fix it for everyone.
 *
 * Calls share at most MAX_CALL_CONNECTIONS connections (a burst queues
 * instead of opening a connection per call); watches go to a pool of their
 * own without a cap, so any number of held watches can never take the calls'
 * connections.
 */
export class KeepAliveKubeConfig extends KubeConfig {
  private readonly dispatchers = new Map<string, SharedDispatcher>();

  constructor() {
    super();
    // A private method of KubeConfig in the typings; replaced per instance.
    const build = (this['createDispatcher'] as CreateDispatcher).bind(this);
    this['createDispatcher'] = ((cluster, agentOptions) => {
      const key = dispatcherKey(cluster, agentOptions);
      let shared = this.dispatchers.get(key);
      if (!shared) {
        shared = this.buildShared(cluster, agentOptions, build);
        if (!shared) return undefined;
        this.dispatchers.set(key, shared);
      }
      return shared.dispatcher;
    }) satisfies CreateDispatcher;
  }

  private buildShared(
    cluster: unknown,
    agentOptions: Record<string, unknown>,
    build: CreateDispatcher,
  ): SharedDispatcher | undefined {
    const options = this.createDispatcherOptions(
      cluster as Parameters<KubeConfig['createDispatcherOptions']>[0],
      agentOptions,
    );
    if (options.type !== 'agent') {
      // Through a proxy, or plain HTTP: client-node's own dispatcher, shared as it is.
      const own = build(cluster, agentOptions) as Closable | undefined;
      return own && { dispatcher: own, closables: [own] };
    }
    const keepAliveTimeout = IDLE_CONNECTION_MS;
    const watches = new Agent({ connect: options.connect, keepAliveTimeout });
    const calls = new Agent({
      connect: options.connect,
      connections: MAX_CALL_CONNECTIONS,
      keepAliveTimeout,
    });
    const dispatcher = calls.compose(
      (dispatch) => (opts, handler) =>
        isWatchPath(opts.path) ? watches.dispatch(opts, handler) : dispatch(opts, handler),
    );
    return { dispatcher, closables: [calls, watches] };
  }

  /** Dispatchers made so far (one per distinct cluster and TLS settings). */
  get dispatcherCount(): number {
    return this.dispatchers.size;
  }

  /**
   * Closes the shared connections. Requests still running get `graceMs` to
   * finish; then they are cut, so a long watch (or a request stuck on a
   * server that went away) never holds a shutdown.
   */
  async close(graceMs = 1000): Promise<void> {
    const all = [...this.dispatchers.values()].flatMap((d) => d.closables);
    this.dispatchers.clear();
    await Promise.all(
      all.map(async (d) => {
        let timer: NodeJS.Timeout | undefined;
        const cut = new Promise<'cut'>((r) => (timer = setTimeout(() => r('cut'), graceMs)));
        const closed = await Promise.race([d.close().then(() => 'closed' as const), cut]).catch(
          () => 'closed' as const,
        );
        clearTimeout(timer);
        if (closed === 'cut') await d.destroy().catch(() => undefined);
      }),
    );
  }
}

function dispatcherKey(cluster: unknown, agentOptions: Record<string, unknown>): string {
  const c = (cluster ?? {}) as { name?: string; server?: string; proxyUrl?: string };
  const hash = createHash('sha256');
  hash.update(JSON.stringify([c.name, c.server, c.proxyUrl]));
  for (const field of DISPATCHER_FIELDS) {
    const value = agentOptions[field];
    hash.update(`|${field}=`);
    if (value === undefined) continue;
    hash.update(Buffer.isBuffer(value) ? value : JSON.stringify(value));
  }
  return hash.digest('hex');
}

/**
 * Loads the host cluster's kubeconfig: an explicit file, else the in-cluster
 * service account, else `$KUBECONFIG`/`~/.kube/config`. client-node silently
 * falls back to http://localhost:8080 when it finds nothing; that would send
 * labvirt's writes to whatever listens there, so it is refused.
 */
export function loadKubeConfig(settings: KubeConnectionSettings): KeepAliveKubeConfig {
  const kc = new KeepAliveKubeConfig();
  if (settings.kubeconfig) {
    kc.loadFromFile(settings.kubeconfig);
  } else if (process.env.KUBERNETES_SERVICE_HOST && process.env.KUBERNETES_SERVICE_PORT) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (settings.context) {
    if (!kc.getContexts().some((c) => c.name === settings.context)) {
      throw new Error(
        `kube context "${settings.context}" is not in the kubeconfig (have: ${kc
          .getContexts()
          .map((c) => c.name)
          .join(', ')})`,
      );
    }
    kc.setCurrentContext(settings.context);
  }
  const server = kc.getCurrentCluster()?.server;
  if (!server || /^https?:\/\/(localhost|127\.0\.0\.1):8080\/?$/.test(server)) {
    throw new Error(
      'no host cluster configured: set kube.kubeconfig (or $LABVIRT_KUBECONFIG) to a kubeconfig file; ' +
        "labvirt refuses client-node's silent fallback to http://localhost:8080",
    );
  }
  return kc;
}

/** A Kubernetes object as labvirt renders and reads them. */
export type KubeObject = KubernetesObject & Record<string, unknown>;

export interface VmiStatusView {
  name: string;
  /** Tells a replacement VMI from the one it replaced (same name). */
  uid?: string;
  phase: string;
  ready: boolean;
  agentConnected: boolean;
  unschedulable: boolean;
  reason?: string;
}

const KUBEVIRT_GROUP = 'kubevirt.io';
/** How long after binding labvirt's env role a 403 is taken for RBAC not having caught up. */
const BINDING_SETTLE_MS = 10_000;
const BINDING_RETRY_MS = 250;
const KUBEVIRT_VERSION = 'v1';
const MANAGED_SELECTOR = 'app.kubernetes.io/managed-by=labvirt';
/** KubeVirt's label on every virt-launcher pod. */
const LAUNCHER_SELECTOR = 'kubevirt.io=virt-launcher';
/** KubeVirt's label naming the uid of the VMI a launcher pod runs. */
const CREATED_BY_LABEL = 'kubevirt.io/created-by';

export function isApiError(err: unknown, code?: number): err is ApiException<unknown> {
  return err instanceof ApiException && (code === undefined || err.code === code);
}

/**
 * ResourceQuota admission's refusal (403 "exceeded quota"). It answers before
 * the API server finds a name taken, so a create repeated at a full quota
 * gets it for an object that is already there.
 */
export function isQuotaExceeded(err: unknown): boolean {
  return isApiError(err, 403) && /exceeded quota/.test(apiErrorMessage(err));
}

export interface HostClusterOptions {
  logger: Logger;
  /** Called once per API request (metrics: requests per environment lifecycle). */
  onRequest?: (verb: string, resource: string) => void;
  /** Pause between retries when a fresh ResourceQuota's status is still unknown. */
  quotaRetryMs?: number;
  /** How often the shared watches list everything again as a watchdog (default 5 min). */
  watchRelistMs?: number;
  /** Repeats of a call after a transient network failure (default 4 tries from 250 ms). */
  transientRetry?: TransientRetry;
}

/**
 * What the Namespace watch keeps of each env Namespace: its labels and
 * annotations (labvirt's own, a few short strings), not the whole object
 * (managedFields alone are kilobytes on a real API server).
 */
export interface NamespaceView {
  name: string;
  /** Set once deletion has started (the Namespace is Terminating). */
  deleting: boolean;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
}

/**
 * Every call labvirt makes to the host cluster goes through here, so it can be
 * counted, retried where the API asks for it, and read as one list.
 */
export class HostCluster {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly objects: KubernetesObjectApi;
  private readonly log: Logger;
  private readonly listeners: ((verb: string, resource: string) => void)[] = [];
  private readonly quotaRetryMs: number;
  private identity?: Promise<string>;
  private readonly watchRelistMs: number;
  private readonly transientRetry: TransientRetry;
  private vmiWatch: SharedWatch<VmiStatusView> | undefined;
  private namespaceWatch: SharedWatch<NamespaceView> | undefined;
  /**
   * Whether the API server is reachable, from every call made through this
   * object's clients: call sites ask it which level their line about a
   * failure deserves.
   */
  readonly reachability: KubeApiReachability;

  constructor(
    readonly kubeConfig: KubeConfig,
    options: HostClusterOptions,
  ) {
    this.log = options.logger;
    this.reachability = new KubeApiReachability(this.log);
    this.core = this.makeApiClient(CoreV1Api);
    this.custom = this.makeApiClient(CustomObjectsApi);
    this.objects = observedApi(KubernetesObjectApi.makeApiClient(kubeConfig), this.reachability);
    if (options.onRequest) this.listeners.push(options.onRequest);
    this.quotaRetryMs = options.quotaRetryMs ?? 1000;
    this.watchRelistMs = options.watchRelistMs ?? 5 * 60_000;
    this.transientRetry = options.transientRetry ?? DEFAULT_TRANSIENT_RETRY;
  }

  /** A client-node API client whose calls report to `reachability` and whose errors read well. */
  makeApiClient<T extends ApiType>(api: ApiConstructor<T>): T {
    return observedApi(this.kubeConfig.makeApiClient(api), this.reachability);
  }

  /**
   * One API call, counted per attempt and repeated after a transient network
   * failure. `idempotent`: repeating it after the server may already have
   * acted leaves the same result (reads, merge patches, deletes that take 404
   * as done, creates that take 409 as done); `any` repeats it only when the
   * request cannot have been sent.
   */
  private call<T>(
    verb: string,
    resource: string,
    request: 'any' | 'idempotent',
    op: () => Promise<T>,
  ): Promise<T> {
    return retryTransient(
      () => {
        this.count(verb, resource);
        return op();
      },
      request,
      this.transientRetry,
    );
  }

  /**
   * labvirt's VMIs in every namespace, watched by one connection and shared
   * by every job waiting for an env to boot (started on first use).
   */
  vmis(): SharedWatch<VmiStatusView> {
    this.vmiWatch ??= this.startWatch({
      kind: 'VirtualMachineInstance',
      path: `/apis/${KUBEVIRT_GROUP}/${KUBEVIRT_VERSION}/virtualmachineinstances`,
      list: async () =>
        (await this.custom.listClusterCustomObject({
          group: KUBEVIRT_GROUP,
          version: KUBEVIRT_VERSION,
          plural: 'virtualmachineinstances',
          labelSelector: MANAGED_SELECTOR,
        })) as { items: WatchedObject[]; metadata?: { resourceVersion?: string } },
      project: (obj) => toVmiStatus(obj as VmiObject),
    });
    return this.vmiWatch;
  }

  /**
   * labvirt's Namespaces, watched by one connection and shared (teardown
   * waits on it, the NodePort sync follows it; started on first use).
   */
  namespaces(): SharedWatch<NamespaceView> {
    this.namespaceWatch ??= this.startWatch({
      kind: 'Namespace',
      path: '/api/v1/namespaces',
      clusterScoped: true,
      list: async () =>
        (await this.core.listNamespace({ labelSelector: MANAGED_SELECTOR })) as {
          items: WatchedObject[];
          metadata?: { resourceVersion?: string };
        },
      project: (obj) => {
        const meta = (obj as V1Namespace).metadata;
        return {
          name: meta?.name ?? '',
          deleting: Boolean(meta?.deletionTimestamp),
          labels: meta?.labels ?? {},
          annotations: meta?.annotations ?? {},
        };
      },
    });
    return this.namespaceWatch;
  }

  private startWatch<T>(opts: {
    kind: string;
    clusterScoped?: boolean;
    path: string;
    list: () => Promise<{ items: WatchedObject[]; metadata?: { resourceVersion?: string } }>;
    project: (obj: WatchedObject) => T;
  }): SharedWatch<T> {
    const watch = new SharedWatch<T>({
      ...opts,
      kubeConfig: this.kubeConfig,
      labelSelector: MANAGED_SELECTOR,
      relistMs: this.watchRelistMs,
      logger: this.log,
      outage: this.reachability,
      onRequest: (verb, kind) => this.count(verb, kind),
    });
    watch.start();
    return watch;
  }

  /**
   * Creates every object in order. An object that already exists is left as
   * it is (re-running a half-done provision is safe). A refusal because a new
   * quota's status is not computed yet is retried, as the API server asks.
   */
  async createAll(objects: KubeObject[], deadline = Date.now() + 60_000): Promise<void> {
    let boundAt = 0;
    for (const obj of objects) {
      for (;;) {
        try {
          // A repeat after a broken connection may meet its own first try: 409, done.
          await this.call('create', obj.kind ?? 'unknown', 'idempotent', () =>
            this.objects.create(toClientModel(obj)),
          );
          if (obj.kind === 'RoleBinding') boundAt = Date.now();
          break;
        } catch (err) {
          if (isApiError(err, 409)) {
            if (obj.kind === 'RoleBinding') boundAt = Date.now();
            break;
          }
          if (isApiError(err, 403) && /status unknown for quota/.test(apiErrorMessage(err))) {
            if (Date.now() > deadline) throw err;
            await sleep(this.quotaRetryMs);
            continue;
          }
          // The API server's RBAC authorizer learns of a new RoleBinding from
          // a watch, a moment after creating it: a refusal just after is retried.
          if (isApiError(err, 403) && Date.now() - boundAt < BINDING_SETTLE_MS) {
            await sleep(BINDING_RETRY_MS);
            continue;
          }
          // Repeating a half-done provision in a namespace at its quota: the
          // refusal may be for an object its first try created. A read that
          // fails too leaves the create's own error to be reported.
          if (isQuotaExceeded(err) && (await this.exists(obj).catch(() => false))) {
            if (obj.kind === 'RoleBinding') boundAt = Date.now();
            break;
          }
          throw new Error(
            `creating ${obj.kind} ${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}: ${apiErrorMessage(err)}`,
          );
        }
      }
    }
  }

  /** Whether an object of this kind and name is there (any content: a create's repeat only needs its name taken). */
  private async exists(obj: KubeObject): Promise<boolean> {
    try {
      await this.call('get', obj.kind ?? 'unknown', 'idempotent', () =>
        this.objects.read({
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          metadata: { name: obj.metadata?.name ?? '', namespace: obj.metadata?.namespace },
        }),
      );
      return true;
    } catch (err) {
      if (isApiError(err, 404)) return false;
      throw err;
    }
  }

  /** Counts a request made directly with `core` or a client of `kubeConfig` (the NodePort sync's). */
  recordRequest(verb: string, resource: string): void {
    this.count(verb, resource);
  }

  /** Adds a listener called once per API request (metrics, benchmarks). */
  onRequest(listener: (verb: string, resource: string) => void): void {
    this.listeners.push(listener);
  }

  private count(verb: string, resource: string): void {
    for (const l of this.listeners) l(verb, resource);
  }

  /**
   * The user name labvirt is authenticated as (SelfSubjectReview, which every
   * authenticated identity may make), asked once: the subject bound into
   * each env Namespace.
   */
  async whoAmI(): Promise<string> {
    this.identity ??= this.makeApiClient(AuthenticationV1Api)
      .createSelfSubjectReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      })
      .then((review) => {
        const name = review.status?.userInfo?.username;
        if (!name) throw new Error('the API server did not say who labvirt is (SelfSubjectReview)');
        return name;
      });
    this.identity.catch(() => (this.identity = undefined));
    return this.identity;
  }

  /** Every Namespace labvirt owns (label `app.kubernetes.io/managed-by=labvirt`), all pages. */
  async listManagedNamespaces(): Promise<V1Namespace[]> {
    const out: V1Namespace[] = [];
    let cont: string | undefined;
    do {
      const page = await this.call('list', 'Namespace', 'idempotent', () =>
        this.core.listNamespace({ labelSelector: MANAGED_SELECTOR, limit: 500, _continue: cont }),
      );
      out.push(...page.items);
      cont = page.metadata?._continue || undefined;
    } while (cont);
    return out;
  }

  async getNamespace(name: string): Promise<V1Namespace | undefined> {
    try {
      return await this.call('get', 'Namespace', 'idempotent', () =>
        this.core.readNamespace({ name }),
      );
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw err;
    }
  }

  /**
   * Merges labels and annotations into a Namespace; `null` removes a key.
   * Never touches a Namespace that labvirt does not manage.
   */
  async patchNamespaceMeta(
    name: string,
    meta: { labels?: Record<string, string | null>; annotations?: Record<string, string | null> },
  ): Promise<void> {
    // A merge patch of fixed values: applying it twice is applying it once.
    await this.call('patch', 'Namespace', 'idempotent', () =>
      this.core.patchNamespace(
        { name, body: { metadata: meta } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
  }

  /** Starts deleting a Namespace (and so the whole env); absent is fine. */
  async deleteNamespace(name: string): Promise<void> {
    try {
      await this.call('delete', 'Namespace', 'idempotent', () =>
        this.core.deleteNamespace({ name, propagationPolicy: 'Background' }),
      );
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  async listVmis(namespace: string): Promise<VmiStatusView[]> {
    const list = (await this.call('list', 'VirtualMachineInstance', 'idempotent', () =>
      this.custom.listNamespacedCustomObject({
        group: KUBEVIRT_GROUP,
        version: KUBEVIRT_VERSION,
        namespace,
        plural: 'virtualmachineinstances',
      }),
    )) as { items: VmiObject[] };
    return list.items.map(toVmiStatus);
  }

  async listVms(namespace: string): Promise<KubeObject[]> {
    const list = (await this.call('list', 'VirtualMachine', 'idempotent', () =>
      this.custom.listNamespacedCustomObject({
        group: KUBEVIRT_GROUP,
        version: KUBEVIRT_VERSION,
        namespace,
        plural: 'virtualmachines',
      }),
    )) as { items: KubeObject[] };
    return list.items;
  }

  /**
   * The address of each VMI of the namespace that runs now, by VMI uid: its
   * virt-launcher pod's `status.podIP`, which with bridge binding is the
   * guest's address. Set by the host's CNI and kubelet, it is out of reach of
   * a student with root in the guest — unlike the VMI's
   * `status.interfaces[].ipAddress`, which the guest agent reports. Read when
   * an address is needed (no watch: labvirt may read pods only in its env
   * Namespaces). A pod that is going away, not running, or whose VMI the
   * labels do not name is left out.
   */
  async launcherAddresses(namespace: string): Promise<Map<string, string>> {
    const pods = await this.call('list', 'Pod', 'idempotent', () =>
      this.core.listNamespacedPod({ namespace, labelSelector: LAUNCHER_SELECTOR }),
    );
    const byVmi = new Map<string, string>();
    for (const pod of pods.items) {
      const meta = pod.metadata;
      // virt-controller labels each launcher with its VMI's uid; the owner
      // reference says the same. Both must agree when both are there.
      const labelled = meta?.labels?.[CREATED_BY_LABEL];
      const owner = meta?.ownerReferences?.find(
        (o) => o.controller && o.kind === 'VirtualMachineInstance',
      )?.uid;
      const uid = labelled ?? owner;
      if (!uid || (labelled && owner && labelled !== owner)) continue;
      if (meta?.deletionTimestamp || pod.status?.phase !== 'Running') continue;
      const ip = pod.status?.podIP;
      if (ip) byVmi.set(uid, ip);
    }
    return byVmi;
  }

  /** Deletes a VMI so its VM (runStrategy Always) boots a fresh one. */
  async deleteVmi(namespace: string, name: string): Promise<void> {
    try {
      // Deleting twice is deleting once: the repeat's 404 is taken as done.
      await this.call('delete', 'VirtualMachineInstance', 'idempotent', () =>
        this.custom.deleteNamespacedCustomObject({
          group: KUBEVIRT_GROUP,
          version: KUBEVIRT_VERSION,
          namespace,
          plural: 'virtualmachineinstances',
          name,
        }),
      );
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  async readSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await this.call('get', 'Secret', 'idempotent', () =>
        this.core.readNamespacedSecret({ namespace, name }),
      );
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw err;
    }
  }

  async createSecret(namespace: string, secret: V1Secret): Promise<void> {
    await this.call('create', 'Secret', 'any', () =>
      this.core.createNamespacedSecret({ namespace, body: secret }),
    );
  }

  /** Records a Kubernetes Event (what `kubectl describe` lists). */
  async createEvent(namespace: string, event: CoreV1Event): Promise<void> {
    await this.call('create', 'Event', 'any', () =>
      this.core.createNamespacedEvent({ namespace, body: event }),
    );
  }

  /** Cheap liveness probe of the API server. */
  async ping(): Promise<void> {
    this.count('list', 'Namespace');
    await this.core.listNamespace({ limit: 1 });
  }

  logger(): Logger {
    return this.log;
  }

  /** Closes the kept-alive connections to the API server (at shutdown). */
  async close(): Promise<void> {
    await Promise.all([this.vmiWatch?.stop(), this.namespaceWatch?.stop()]);
    if (this.kubeConfig instanceof KeepAliveKubeConfig) await this.kubeConfig.close();
  }
}

interface VmiObject {
  metadata?: { name?: string; uid?: string };
  // Not `status.interfaces`: the guest agent reports those, and a student with
  // root in the guest controls the agent (see launcherAddresses).
  status?: {
    phase?: string;
    conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
  };
}

function toVmiStatus(vmi: VmiObject): VmiStatusView {
  const conditions = vmi.status?.conditions ?? [];
  const cond = (type: string) => conditions.find((c) => c.type === type);
  const scheduled = cond('PodScheduled');
  const unschedulable = scheduled?.status === 'False' && scheduled.reason === 'Unschedulable';
  return {
    name: vmi.metadata?.name ?? '',
    uid: vmi.metadata?.uid,
    phase: vmi.status?.phase ?? 'Pending',
    ready: cond('Ready')?.status === 'True',
    agentConnected: cond('AgentConnected')?.status === 'True',
    unschedulable,
    reason: unschedulable ? scheduled?.message : cond('Ready')?.reason,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
