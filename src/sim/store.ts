import { randomUUID } from 'node:crypto';

export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  /**
   * Served with a `/status` subresource: then main-resource writes cannot
   * change `status` and `/status` writes change only it. Without one (a
   * Secret, KubeVirt's VMI), `status` is an ordinary field.
   */
  status?: boolean;
}

/**
 * Kinds whose `metadata.generation` the API server keeps (1 on create, +1 on
 * each spec change): every custom resource and, of the built-in kinds served
 * here, NetworkPolicy. A ConfigMap, Pod, Service… has none.
 */
function tracksGeneration(type: ResourceType): boolean {
  return type.group === 'kubevirt.io' || type.plural === 'networkpolicies';
}

/** What every Kubernetes cluster serves (of what labvirt and its students use). */
export const CORE_RESOURCES: ResourceType[] = [
  {
    group: '',
    version: 'v1',
    plural: 'namespaces',
    kind: 'Namespace',
    namespaced: false,
    status: true,
  },
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false, status: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true, status: true },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, status: true },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  {
    group: '',
    version: 'v1',
    plural: 'resourcequotas',
    kind: 'ResourceQuota',
    namespaced: true,
    status: true,
  },
  { group: '', version: 'v1', plural: 'limitranges', kind: 'LimitRange', namespaced: true },
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  {
    group: 'networking.k8s.io',
    version: 'v1',
    plural: 'networkpolicies',
    kind: 'NetworkPolicy',
    namespaced: true,
  },
  ...(
    [
      ['roles', 'Role', true],
      ['rolebindings', 'RoleBinding', true],
      ['clusterroles', 'ClusterRole', false],
      ['clusterrolebindings', 'ClusterRoleBinding', false],
    ] as const
  ).map(([plural, kind, namespaced]) => ({
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    plural,
    kind,
    namespaced,
  })),
];

/** A host cluster with KubeVirt installed. */
export const RESOURCES: ResourceType[] = [
  ...CORE_RESOURCES,
  {
    group: 'kubevirt.io',
    version: 'v1',
    plural: 'virtualmachines',
    kind: 'VirtualMachine',
    namespaced: true,
    status: true,
  },
  {
    group: 'kubevirt.io',
    version: 'v1',
    plural: 'virtualmachineinstances',
    kind: 'VirtualMachineInstance',
    namespaced: true,
  },
  // virt-operator's install resource: what `labvirt doctor` reads KubeVirt's configuration from.
  {
    group: 'kubevirt.io',
    version: 'v1',
    plural: 'kubevirts',
    kind: 'KubeVirt',
    namespaced: true,
    status: true,
  },
];

export type Obj = Record<string, unknown> & {
  apiVersion?: string;
  kind?: string;
  metadata: Meta;
};
export interface Meta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: { uid: string; kind: string; name: string; apiVersion: string }[];
  [k: string]: unknown;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export interface ChangeEvent {
  type: WatchEventType;
  resource: string;
  rv: number;
  object: Obj;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

const clone = <T>(v: T): T => structuredClone(v);

/** Now, as the API server writes timestamps (RFC 3339, whole seconds). */
export const timestamp = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/**
 * The sim's etcd: objects by resource, one global resourceVersion counter,
 * a bounded history of changes for watch resumption (older resourceVersions
 * answer 410 Gone, as a real API server does once etcd compacted them).
 */
export class ObjectStore {
  // A fresh API server's watch cache starts at etcd's current revision, so an
  // old resourceVersion such as "1" is already too old (410).
  private rv = 1000;
  private readonly objects = new Map<string, Map<string, Obj>>();
  readonly history: ChangeEvent[] = [];
  private readonly listeners = new Set<(e: ChangeEvent) => void>();

  constructor(
    private readonly historyLimit = 10_000,
    /** The resources this cluster serves (discovery, routing and tables follow it). */
    readonly resources: readonly ResourceType[] = RESOURCES,
  ) {
    for (const r of resources) this.objects.set(r.plural, new Map());
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Oldest resourceVersion a watch can still resume from. */
  get oldestWatchable(): number {
    return this.history[0]?.rv ?? this.rv;
  }

  onChange(fn: (e: ChangeEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private key(namespace: string | undefined, name: string): string {
    return `${namespace ?? ''}/${name}`;
  }

  private table(resource: string): Map<string, Obj> {
    const t = this.objects.get(resource);
    if (!t)
      throw new ApiError(
        404,
        'NotFound',
        `the server could not find the requested resource (${resource})`,
      );
    return t;
  }

  get(resource: string, namespace: string | undefined, name: string): Obj | undefined {
    const o = this.table(resource).get(this.key(namespace, name));
    return o ? clone(o) : undefined;
  }

  /** Live reference, for controllers inside the sim (never hand it to a client). */
  peek(resource: string, namespace: string | undefined, name: string): Obj | undefined {
    return this.table(resource).get(this.key(namespace, name));
  }

  list(resource: string, namespace?: string): Obj[] {
    const out: Obj[] = [];
    for (const o of this.table(resource).values()) {
      if (namespace === undefined || o.metadata.namespace === namespace) out.push(o);
    }
    return out;
  }

  count(resource: string): number {
    return this.table(resource).size;
  }

  private emit(type: WatchEventType, resource: string, object: Obj): void {
    const event: ChangeEvent = { type, resource, rv: this.rv, object: clone(object) };
    this.history.push(event);
    if (this.history.length > this.historyLimit)
      this.history.splice(0, this.history.length - this.historyLimit);
    for (const l of this.listeners) l(event);
  }

  /**
   * Stores a new object. With `dryRun`, answers exactly as the write would
   * (name generation, AlreadyExists, uid and timestamps) and stores nothing:
   * no resourceVersion is taken and no watcher hears of it.
   */
  create(resource: string, obj: Obj, opts: { dryRun?: boolean } = {}): Obj {
    const t = this.table(resource);
    const meta = obj.metadata;
    if (!meta.name && meta.generateName) {
      for (;;) {
        const name = meta.generateName + Math.random().toString(36).slice(2, 7);
        if (!t.has(this.key(meta.namespace, name))) {
          meta.name = name;
          break;
        }
      }
    }
    if (!meta.name)
      throw new ApiError(
        422,
        'Invalid',
        'metadata.name: Required value: name or generateName is required',
      );
    const k = this.key(meta.namespace, meta.name);
    const type = this.resources.find((r) => r.plural === resource)!;
    if (t.has(k)) {
      throw new ApiError(
        409,
        'AlreadyExists',
        `${type.plural}${type.group ? '.' + type.group : ''} "${meta.name}" already exists`,
        {
          name: meta.name,
          group: type.group,
          kind: type.plural,
        },
      );
    }
    meta.uid = randomUUID();
    meta.creationTimestamp = timestamp();
    if (tracksGeneration(type)) meta.generation = 1;
    if (opts.dryRun) {
      delete meta.resourceVersion;
      return clone(obj);
    }
    this.rv++;
    meta.resourceVersion = String(this.rv);
    const stored = clone(obj);
    t.set(k, stored);
    this.emit('ADDED', resource, stored);
    return clone(stored);
  }

  /**
   * Replaces an object. With `expectedRv`, a stale writer gets 409 Conflict
   * (optimistic concurrency). `specChanged` bumps metadata.generation.
   */
  update(
    resource: string,
    obj: Obj,
    opts: { expectedRv?: string; specChanged?: boolean; dryRun?: boolean } = {},
  ): Obj {
    const t = this.table(resource);
    const k = this.key(obj.metadata.namespace, obj.metadata.name!);
    const cur = t.get(k);
    const type = this.resources.find((r) => r.plural === resource)!;
    if (!cur) {
      throw new ApiError(
        404,
        'NotFound',
        `${type.plural}${type.group ? '.' + type.group : ''} "${obj.metadata.name}" not found`,
        {
          name: obj.metadata.name,
          group: type.group,
          kind: type.plural,
        },
      );
    }
    if (opts.expectedRv && opts.expectedRv !== cur.metadata.resourceVersion) {
      throw new ApiError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${type.plural}${type.group ? '.' + type.group : ''} "${obj.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`,
        { name: obj.metadata.name, group: type.group, kind: type.plural },
      );
    }
    const next = clone(obj);
    next.metadata = {
      ...next.metadata,
      uid: cur.metadata.uid,
      creationTimestamp: cur.metadata.creationTimestamp,
      deletionTimestamp: cur.metadata.deletionTimestamp ?? next.metadata.deletionTimestamp,
      // A dry run keeps the current resourceVersion: nothing changed.
      resourceVersion: opts.dryRun ? cur.metadata.resourceVersion : String(this.rv + 1),
      generation: tracksGeneration(type)
        ? (cur.metadata.generation ?? 1) + (opts.specChanged ? 1 : 0)
        : cur.metadata.generation,
    };
    if (next.metadata.generation === undefined) delete next.metadata.generation;
    if (opts.dryRun) return next;
    this.rv++;
    // An object marked for deletion goes away once its last finalizer is
    // removed (a namespace's spec.finalizers too: the namespace controller's).
    const specFinalizers = (next.spec as { finalizers?: unknown[] } | undefined)?.finalizers;
    const held =
      Boolean(next.metadata.finalizers?.length) ||
      (resource === 'namespaces' && Array.isArray(specFinalizers) && specFinalizers.length > 0);
    if (next.metadata.deletionTimestamp && !held) {
      t.delete(k);
      this.emit('DELETED', resource, next);
      return clone(next);
    }
    t.set(k, next);
    this.emit('MODIFIED', resource, next);
    return clone(next);
  }

  /**
   * Deletes now, or only marks when finalizers hold the object. With
   * `dryRun`, returns what the deletion would leave and changes nothing.
   */
  remove(
    resource: string,
    namespace: string | undefined,
    name: string,
    opts: { dryRun?: boolean } = {},
  ): Obj | undefined {
    const t = this.table(resource);
    const k = this.key(namespace, name);
    const cur = t.get(k);
    if (!cur) return undefined;
    if (opts.dryRun) {
      const preview = clone(cur);
      if (preview.metadata.finalizers?.length) preview.metadata.deletionTimestamp ??= timestamp();
      return preview;
    }
    if (cur.metadata.finalizers?.length) {
      if (!cur.metadata.deletionTimestamp) {
        this.rv++;
        cur.metadata.deletionTimestamp = timestamp();
        cur.metadata.resourceVersion = String(this.rv);
        this.emit('MODIFIED', resource, cur);
      }
      return clone(cur);
    }
    this.rv++;
    t.delete(k);
    cur.metadata.resourceVersion = String(this.rv);
    this.emit('DELETED', resource, cur);
    return clone(cur);
  }
}
