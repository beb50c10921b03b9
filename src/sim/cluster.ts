import type { Admission } from './api.js';
import { ApiError, timestamp, type ObjectStore, type Obj, type ResourceType } from './store.js';

export interface ClusterOptions {
  /** How long a deleted namespace stays Terminating while its contents go. */
  namespaceDeleteDelayMs: number;
  /** How long a new ResourceQuota's status stays unknown (creates it counts are refused meanwhile). */
  quotaStatusDelayMs: number;
  /** Where ClusterIPs come from: the first two octets of a /16 (default `10.96`). */
  serviceIpPrefix?: string;
  /** The cluster CA the root-CA publisher puts in every namespace as ConfigMap `kube-root-ca.crt`. */
  rootCaPem?: string;
}

const ROOT_CA_CONFIGMAP = 'kube-root-ca.crt';

/** What a Service takes of `services.nodeports` (one per port) and `services.loadbalancers`. */
function serviceUsage(svc: Obj): Record<string, number> {
  const spec = svc.spec as { type?: string; ports?: unknown[] } | undefined;
  const lb = spec?.type === 'LoadBalancer';
  const nodePorts = lb || spec?.type === 'NodePort' ? (spec?.ports?.length ?? 0) : 0;
  return { 'services.nodeports': nodePorts, 'services.loadbalancers': lb ? 1 : 0 };
}

/** Pod resources a quota counts: requests/limits of cpu and memory. */
function podResources(pod: Obj): Record<string, number> {
  const out: Record<string, number> = {};
  const containers =
    (
      pod.spec as {
        containers?: {
          resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
        }[];
      }
    )?.containers ?? [];
  for (const c of containers) {
    for (const [kind, values] of [
      ['requests', c.resources?.requests],
      ['limits', c.resources?.limits],
    ] as const) {
      for (const [res, q] of Object.entries(values ?? {})) {
        const key = `${kind}.${res}`;
        out[key] = (out[key] ?? 0) + parseQuantity(q);
      }
    }
  }
  return out;
}

export function parseQuantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) return 0;
  const n = Number(m[1]);
  const mult: Record<string, number> = {
    m: 1e-3,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return n * (m[2] ? mult[m[2]]! : 1);
}

const COUNTED: Record<string, string> = {
  pods: 'pods',
  services: 'services',
  secrets: 'secrets',
  configmaps: 'configmaps',
  resourcequotas: 'resourcequotas',
};

/**
 * Core Kubernetes behaviour around the store: namespace lifecycle and
 * cascading deletion, ownerReference garbage collection, Service IP and
 * NodePort allocation, ResourceQuota admission.
 */
export class ClusterEmulation implements Admission {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly nodePorts = new Map<number, string>();
  private nextClusterIp = 1;

  constructor(
    private readonly store: ObjectStore,
    private readonly options: ClusterOptions,
  ) {
    store.onChange((e) => {
      if (e.type === 'DELETED') {
        this.collectGarbage(e.object);
        if (e.resource === 'services') this.releasePorts(e.object);
      }
      // The root-CA publisher keeps kube-root-ca.crt in every live namespace.
      if (e.resource === 'namespaces' && e.type === 'ADDED')
        this.later(0, () => this.publishRootCa(e.object.metadata.name!));
      if (
        e.resource === 'configmaps' &&
        e.type === 'DELETED' &&
        e.object.metadata.name === ROOT_CA_CONFIGMAP
      )
        this.later(0, () => this.publishRootCa(e.object.metadata.namespace!));
    });
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
  }

  private publishRootCa(namespace: string): void {
    const pem = this.options.rootCaPem;
    const ns = this.store.peek('namespaces', undefined, namespace);
    if (!pem || !ns || ns.metadata.deletionTimestamp) return;
    if (this.store.peek('configmaps', namespace, ROOT_CA_CONFIGMAP)) return;
    this.store.create('configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: ROOT_CA_CONFIGMAP,
        namespace,
        annotations: {
          'kubernetes.io/description':
            'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.',
        },
      },
      data: { 'ca.crt': pem },
    });
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  /** Like the API server, a Secret's `stringData` is folded into base64 `data` and never stored. */
  private foldStringData(obj: Obj): void {
    const stringData = obj.stringData as Record<string, string> | undefined;
    if (!stringData) return;
    const data = { ...((obj.data as Record<string, string> | undefined) ?? {}) };
    for (const [k, v] of Object.entries(stringData))
      data[k] = Buffer.from(String(v)).toString('base64');
    obj.data = data;
    delete obj.stringData;
  }

  beforeCreate(type: ResourceType, obj: Obj, write: { dryRun: boolean } = { dryRun: false }): void {
    const ns = obj.metadata.namespace;
    if (type.plural === 'secrets') {
      this.foldStringData(obj);
      obj.type ??= 'Opaque';
    }
    if (type.plural === 'namespaces') {
      obj.status = { phase: 'Active' };
      // The API server gives every namespace the controller's own finalizer.
      obj.spec = {
        ...(obj.spec as Record<string, unknown> | undefined),
        finalizers: ['kubernetes'],
      };
      obj.metadata.labels = {
        ...obj.metadata.labels,
        'kubernetes.io/metadata.name': obj.metadata.name ?? '',
      };
      return;
    }
    if (type.namespaced && ns) {
      const namespace = this.store.peek('namespaces', undefined, ns);
      if (!namespace)
        throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, {
          name: ns,
          kind: 'namespaces',
        });
      if ((namespace.status as { phase?: string })?.phase === 'Terminating') {
        throw new ApiError(
          403,
          'Forbidden',
          `${type.plural} "${obj.metadata.name ?? ''}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`,
        );
      }
      if (type.plural === 'pods') this.applyLimitRanges(obj, ns);
      this.admitQuota(type, obj, ns);
    }
    if (type.plural === 'services') this.allocateService(obj, write.dryRun);
    if (type.plural === 'resourcequotas') {
      const hard = (obj.spec as { hard?: Record<string, string> })?.hard ?? {};
      obj.status = {};
      if (write.dryRun) return;
      const name = obj.metadata.name;
      // The quota controller computes status a moment later.
      this.later(this.options.quotaStatusDelayMs, () => {
        const cur = this.store.peek('resourcequotas', ns, name ?? '');
        if (!cur) return;
        const next = structuredClone(cur);
        next.status = { hard, used: this.usage(ns!, hard) };
        try {
          this.store.update('resourcequotas', next);
        } catch {
          /* deleted meanwhile */
        }
      });
    }
  }

  beforeUpdate(
    type: ResourceType,
    obj: Obj,
    old: Obj,
    write: { dryRun: boolean } = { dryRun: false },
  ): void {
    if (type.plural === 'secrets') this.foldStringData(obj);
    if (type.plural === 'namespaces') {
      // spec.finalizers change only through /finalize, never an update.
      obj.spec = {
        ...(obj.spec as Record<string, unknown> | undefined),
        finalizers: (old.spec as { finalizers?: string[] } | undefined)?.finalizers ?? [],
      };
    }
    if (type.plural === 'services') {
      const oldPorts = ((old.spec as { ports?: { nodePort?: number }[] })?.ports ?? []).map(
        (p) => p.nodePort,
      );
      const ports = (obj.spec as { ports?: { nodePort?: number }[] })?.ports ?? [];
      ports.forEach((p, i) => {
        if (p.nodePort && !oldPorts.includes(p.nodePort) && this.nodePorts.has(p.nodePort)) {
          throw invalidNodePort(i, p.nodePort);
        }
      });
      if (write.dryRun) {
        // What the allocation would give, reserving nothing.
        this.allocateService(obj, true, old);
        return;
      }
      this.releasePorts(old);
      this.allocateService(obj);
    }
  }

  onDelete(
    type: ResourceType,
    obj: Obj,
    write: { dryRun: boolean } = { dryRun: false },
  ): Obj | undefined {
    if (type.plural !== 'namespaces') return undefined;
    const name = obj.metadata.name!;
    const cur = this.store.peek('namespaces', undefined, name);
    if (!cur) return undefined;
    if ((cur.status as { phase?: string })?.phase === 'Terminating') return structuredClone(cur);
    const next = structuredClone(cur);
    next.metadata.deletionTimestamp = timestamp();
    next.status = { phase: 'Terminating' };
    if (write.dryRun) return next;
    // spec.finalizers ["kubernetes"] holds it until the namespace controller is done.
    const stored = this.store.update('namespaces', next);
    this.later(this.options.namespaceDeleteDelayMs / 2, () => this.sweepNamespace(name));
    return stored;
  }

  /**
   * The namespace controller: deletes everything in a terminating namespace,
   * waits for what finalizers hold (without touching them: their owners
   * remove them), says what remains in the namespace's conditions, then
   * finalizes it.
   */
  private sweepNamespace(name: string): void {
    const ns = this.store.peek('namespaces', undefined, name);
    if (!ns) return;
    const namespaced = this.store.resources.filter((r) => r.namespaced).map((r) => r.plural);
    // VMs before their VMIs and pods, as KubeVirt's own deletion order goes.
    namespaced.sort((a, b) => Number(b === 'virtualmachines') - Number(a === 'virtualmachines'));
    for (const r of namespaced)
      for (const o of [...this.store.list(r, name)])
        if (!o.metadata.deletionTimestamp) this.store.remove(r, name, o.metadata.name!);
    const remaining = namespaced.flatMap((r) =>
      this.store
        .list(r, name)
        .map((o) => ({ resource: r, finalizers: o.metadata.finalizers ?? [] })),
    );
    if (remaining.length > 0) {
      this.reportRemaining(name, remaining);
      this.later(Math.max(20, this.options.namespaceDeleteDelayMs / 4), () =>
        this.sweepNamespace(name),
      );
      return;
    }
    this.later(this.options.namespaceDeleteDelayMs / 2, () => {
      const live = this.store.peek('namespaces', undefined, name);
      if (!live) return;
      // What POST .../namespaces/{name}/finalize does: the last spec finalizer goes.
      const done = structuredClone(live);
      done.spec = { ...(done.spec as Record<string, unknown>), finalizers: [] };
      this.store.update('namespaces', done);
    });
  }

  private reportRemaining(name: string, remaining: { resource: string; finalizers: string[] }[]) {
    const ns = this.store.peek('namespaces', undefined, name);
    if (!ns) return;
    const byResource = new Map<string, number>();
    const byFinalizer = new Map<string, number>();
    for (const r of remaining) {
      byResource.set(r.resource, (byResource.get(r.resource) ?? 0) + 1);
      for (const f of r.finalizers) byFinalizer.set(f, (byFinalizer.get(f) ?? 0) + 1);
    }
    const t = timestamp();
    const condition = (type: string, on: boolean, reason: string, message: string) =>
      on
        ? { type, status: 'True', reason, message, lastTransitionTime: t }
        : {
            type,
            status: 'False',
            reason: `ContentDeleted`,
            message: 'All content successfully deleted, may be waiting on finalization',
            lastTransitionTime: t,
          };
    const conditions = [
      condition(
        'NamespaceContentRemaining',
        true,
        'SomeResourcesRemain',
        `Some resources are remaining: ${[...byResource].map(([r, n]) => `${r} has ${n} resource instances`).join(', ')}`,
      ),
      condition(
        'NamespaceFinalizersRemaining',
        byFinalizer.size > 0,
        'SomeFinalizersRemain',
        `Some content in the namespace has finalizers remaining: ${[...byFinalizer].map(([f, n]) => `${f} in ${n} resource instances`).join(', ')}`,
      ),
    ];
    const status = ns.status as { conditions?: { type: string; message?: string }[] };
    const same =
      (status.conditions ?? []).map((c) => c.message).join('|') ===
      conditions.map((c) => c.message).join('|');
    if (same) return;
    const next = structuredClone(ns);
    next.status = { phase: 'Terminating', conditions };
    this.store.update('namespaces', next);
  }

  /** Dependents of a deleted owner are deleted in the background. */
  private collectGarbage(owner: Obj): void {
    const uid = owner.metadata.uid;
    if (!uid) return;
    this.later(0, () => {
      for (const r of ['virtualmachineinstances', 'pods', 'secrets', 'configmaps', 'services']) {
        if (!this.store.resources.some((t) => t.plural === r)) continue;
        for (const o of this.store.list(r, owner.metadata.namespace)) {
          if (o.metadata.ownerReferences?.some((ref) => ref.uid === uid))
            this.store.remove(r, o.metadata.namespace, o.metadata.name!);
        }
      }
    });
  }

  /** With `dryRun`, fills in what allocation would and reserves nothing (`old`: the Service's ports before an update). */
  private allocateService(obj: Obj, dryRun = false, old?: Obj): void {
    const spec = (obj.spec ??= {}) as {
      type?: string;
      clusterIP?: string;
      ports?: { nodePort?: number; port?: number }[];
    };
    if (!spec.clusterIP) {
      const n = dryRun ? this.nextClusterIp : this.nextClusterIp++;
      const prefix = this.options.serviceIpPrefix ?? '10.96';
      spec.clusterIP = `${prefix}.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
    }
    if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') {
      const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
      const taken = new Set<number>();
      const oldPorts = new Set(
        ((old?.spec as { ports?: { nodePort?: number }[] } | undefined)?.ports ?? []).map(
          (p) => p.nodePort,
        ),
      );
      (spec.ports ?? []).forEach((p, i) => {
        if (p.nodePort) {
          if (p.nodePort < 30000 || p.nodePort > 32767) {
            throw new ApiError(
              422,
              'Invalid',
              `Service "${obj.metadata.name}" is invalid: spec.ports[${i}].nodePort: Invalid value: ${p.nodePort}: provided port is not in the valid range. The range of valid ports is 30000-32767`,
            );
          }
          const holder = this.nodePorts.get(p.nodePort);
          if (holder && holder !== key) throw invalidNodePort(i, p.nodePort, obj.metadata.name);
        } else {
          for (let port = 30000; port <= 32767; port++) {
            const free = !this.nodePorts.has(port) || (dryRun && oldPorts.has(port));
            if (free && !taken.has(port)) {
              p.nodePort = port;
              break;
            }
          }
        }
        taken.add(p.nodePort!);
        if (!dryRun) this.nodePorts.set(p.nodePort!, key);
      });
    }
  }

  private releasePorts(obj: Obj): void {
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    for (const p of (obj.spec as { ports?: { nodePort?: number }[] })?.ports ?? []) {
      if (p.nodePort && this.nodePorts.get(p.nodePort) === key) this.nodePorts.delete(p.nodePort);
    }
  }

  private usage(ns: string, hard: Record<string, string>): Record<string, string> {
    const used: Record<string, number> = {};
    for (const key of Object.keys(hard)) used[key] = 0;
    for (const [plural, name] of Object.entries(COUNTED)) {
      if (name in used) used[name] = this.store.list(plural, ns).length;
    }
    for (const key of Object.keys(hard)) {
      const m = /^count\/([a-z0-9]+)(?:\.(.+))?$/.exec(key);
      const type =
        m && this.store.resources.find((r) => r.plural === m[1] && r.group === (m[2] ?? ''));
      if (type) used[key] = this.store.list(type.plural, ns).length;
    }
    for (const svc of this.store.list('services', ns))
      for (const [k, v] of Object.entries(serviceUsage(svc)))
        if (k in used) used[k] = (used[k] ?? 0) + v;
    for (const pod of this.store.list('pods', ns)) {
      for (const [k, v] of Object.entries(podResources(pod))) {
        for (const alias of new Set([k, k.replace(/^requests\./, '')]))
          if (alias in used) used[alias] = (used[alias] ?? 0) + v;
      }
    }
    return Object.fromEntries(Object.entries(used).map(([k, v]) => [k, String(v)]));
  }

  /** Objects the cluster has before any client (system namespaces, `default/kubernetes`), defaulted as a create would be. */
  seed(plural: string, obj: Obj): void {
    const type = this.store.resources.find((r) => r.plural === plural);
    if (!type) throw new Error(`this cluster serves no ${plural}`);
    this.beforeCreate(type, obj, { dryRun: false });
    this.store.create(plural, obj);
  }

  /**
   * Admission for objects the cluster's own controllers create (KubeVirt's
   * virt-launcher pods): LimitRange defaults and limits, then quota, as for a
   * client's create. Throws the ApiError the controller would get.
   */
  admitInternal(type: ResourceType, obj: Obj): void {
    const ns = obj.metadata.namespace;
    if (!ns) return;
    if (type.plural === 'pods') this.applyLimitRanges(obj, ns);
    this.admitQuota(type, obj, ns);
  }

  /** The LimitRanger admission plugin, for `type: Container` limits. */
  private applyLimitRanges(pod: Obj, ns: string): void {
    type Res = Record<string, string | number>;
    const containers =
      (
        pod.spec as {
          containers?: { name?: string; resources?: { requests?: Res; limits?: Res } }[];
        }
      )?.containers ?? [];
    for (const range of this.store.list('limitranges', ns)) {
      const limits =
        (
          range.spec as {
            limits?: { type?: string; default?: Res; defaultRequest?: Res; max?: Res; min?: Res }[];
          }
        )?.limits ?? [];
      for (const l of limits.filter((x) => x.type === 'Container')) {
        for (const c of containers) {
          const r = (c.resources ??= {});
          // Pod defaulting first: a limit the client gave is also the request it did not give.
          for (const [res, q] of Object.entries(r.limits ?? {})) {
            r.requests ??= {};
            r.requests[res] ??= q;
          }
          for (const [res, q] of Object.entries(l.default ?? {})) {
            r.limits ??= {};
            if (r.limits[res] !== undefined) continue;
            r.limits[res] = q;
            // A defaulted limit is the request too, unless defaultRequest says otherwise.
            if (l.defaultRequest?.[res] === undefined) {
              r.requests ??= {};
              r.requests[res] ??= q;
            }
          }
          for (const [res, q] of Object.entries(l.defaultRequest ?? {})) {
            r.requests ??= {};
            r.requests[res] ??= q;
          }
          for (const [res, max] of Object.entries(l.max ?? {})) {
            const limit = r.limits?.[res];
            if (limit === undefined || parseQuantity(limit) <= parseQuantity(max)) continue;
            throw new ApiError(
              403,
              'Forbidden',
              `pods "${pod.metadata.name ?? ''}" is forbidden: maximum ${res} usage per Container is ${max}, but limit is ${limit}`,
            );
          }
        }
      }
    }
  }

  private admitQuota(type: ResourceType, obj: Obj, ns: string): void {
    const counted = COUNTED[type.plural];
    // Object count quotas name a resource with its group: count/virtualmachines.kubevirt.io.
    const countKey = `count/${type.plural}${type.group ? `.${type.group}` : ''}`;
    const podRes = type.plural === 'pods' ? podResources(obj) : {};
    for (const quota of this.store.list('resourcequotas', ns)) {
      const hard = (quota.spec as { hard?: Record<string, string> })?.hard ?? {};
      const relevant = Object.keys(hard).some(
        (k) =>
          k === counted ||
          k === countKey ||
          (type.plural === 'pods' && /cpu|memory/.test(k)) ||
          (type.plural === 'services' && k.startsWith('services.')),
      );
      if (!relevant) continue;
      if (!(quota.status as { hard?: unknown })?.hard) {
        throw new ApiError(
          403,
          'Forbidden',
          `${type.plural} "${obj.metadata.name ?? ''}" is forbidden: status unknown for quota: ${quota.metadata.name}, resource: ${Object.keys(hard).join(',')}`,
        );
      }
      if (type.plural === 'pods') {
        // A quota on compute resources needs every container to say how much it wants.
        const containers =
          (
            obj.spec as {
              containers?: {
                name?: string;
                resources?: {
                  requests?: Record<string, unknown>;
                  limits?: Record<string, unknown>;
                };
              }[];
            }
          )?.containers ?? [];
        for (const key of Object.keys(hard)) {
          const m = /^(?:(requests|limits)\.)?(cpu|memory)$/.exec(key);
          if (!m) continue;
          const kind = (m[1] ?? 'requests') as 'requests' | 'limits';
          const missing = containers.filter((c) => c.resources?.[kind]?.[m[2]!] === undefined);
          if (missing.length > 0)
            throw new ApiError(
              403,
              'Forbidden',
              `pods "${obj.metadata.name ?? ''}" is forbidden: failed quota: ${quota.metadata.name}: must specify ${key.includes('.') ? key : `requests.${key}`} for: ${missing.map((c) => c.name ?? '').join(',')}`,
            );
        }
      }
      const used = this.usage(ns, hard);
      const requested: Record<string, number> = {};
      if (counted && counted in hard) requested[counted] = 1;
      if (countKey in hard) requested[countKey] = 1;
      if (type.plural === 'services')
        for (const [k, v] of Object.entries(serviceUsage(obj)))
          if (k in hard && v > 0) requested[k] = v;
      for (const [k, v] of Object.entries(podRes)) {
        if (k in hard) requested[k] = v;
        const short = k.replace(/^requests\./, '');
        if (short !== k && short in hard) requested[short] = v;
      }
      const exceeded = Object.entries(requested).filter(
        ([k, v]) => Number(used[k] ?? 0) + v > parseQuantity(hard[k]!),
      );
      if (exceeded.length > 0) {
        const list = (f: (k: string) => string) => exceeded.map(([k]) => `${k}=${f(k)}`).join(',');
        throw new ApiError(
          403,
          'Forbidden',
          `${type.plural} "${obj.metadata.name ?? ''}" is forbidden: exceeded quota: ${quota.metadata.name}, requested: ${list((k) => String(requested[k]))}, used: ${list((k) => used[k] ?? '0')}, limited: ${list((k) => hard[k]!)}`,
        );
      }
    }
  }
}

function invalidNodePort(index: number, port: number, name?: string): ApiError {
  return new ApiError(
    422,
    'Invalid',
    `Service "${name ?? ''}" is invalid: spec.ports[${index}].nodePort: Invalid value: ${port}: provided port is already allocated`,
    {
      causes: [
        {
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${port}: provided port is already allocated`,
          field: `spec.ports[${index}].nodePort`,
        },
      ],
    },
  );
}
