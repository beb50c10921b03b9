import type { Admission } from './api.js';
import { ApiError, type ObjectStore, type Obj, type ResourceType } from './store.js';

export interface ClusterOptions {
  /** How long a deleted namespace stays Terminating while its contents go. */
  namespaceDeleteDelayMs: number;
  /** How long a new ResourceQuota's status stays unknown (creates it counts are refused meanwhile). */
  quotaStatusDelayMs: number;
  /** Where ClusterIPs come from: the first two octets of a /16 (default `10.96`). */
  serviceIpPrefix?: string;
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
    });
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
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

  beforeCreate(type: ResourceType, obj: Obj): void {
    const ns = obj.metadata.namespace;
    if (type.plural === 'secrets') this.foldStringData(obj);
    if (type.plural === 'namespaces') {
      obj.status = { phase: 'Active' };
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
      this.admitQuota(type, obj, ns);
    }
    if (type.plural === 'services') this.allocateService(obj);
    if (type.plural === 'resourcequotas') {
      const hard = (obj.spec as { hard?: Record<string, string> })?.hard ?? {};
      obj.status = {};
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

  beforeUpdate(type: ResourceType, obj: Obj, old: Obj): void {
    if (type.plural === 'secrets') this.foldStringData(obj);
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
      this.releasePorts(old);
      this.allocateService(obj);
    }
  }

  onDelete(type: ResourceType, obj: Obj): boolean {
    if (type.plural !== 'namespaces') return false;
    const name = obj.metadata.name!;
    const cur = this.store.peek('namespaces', undefined, name);
    if (!cur || (cur.status as { phase?: string })?.phase === 'Terminating') return true;
    const next = structuredClone(cur);
    next.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    next.metadata.finalizers = ['kubernetes'];
    next.status = { phase: 'Terminating' };
    this.store.update('namespaces', next);
    // Contents go first, then the namespace itself, asynchronously.
    this.later(this.options.namespaceDeleteDelayMs / 2, () => {
      // VMs before their VMIs and pods, as KubeVirt's own deletion order goes.
      const order = this.store.resources
        .filter((r) => r.namespaced)
        .map((r) => r.plural)
        .sort((a, b) => Number(b === 'virtualmachines') - Number(a === 'virtualmachines'));
      for (const r of order) {
        for (const o of this.store.list(r, name)) {
          const live = this.store.peek(r, name, o.metadata.name!);
          if (live?.metadata.finalizers?.length) {
            const copy = structuredClone(live);
            copy.metadata.finalizers = [];
            copy.metadata.deletionTimestamp ??= new Date().toISOString();
            this.store.update(r, copy);
          } else this.store.remove(r, name, o.metadata.name!);
        }
      }
      this.later(this.options.namespaceDeleteDelayMs / 2, () => {
        const ns = this.store.peek('namespaces', undefined, name);
        if (!ns) return;
        const done = structuredClone(ns);
        done.metadata.finalizers = [];
        this.store.update('namespaces', done);
      });
    });
    return true;
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

  private allocateService(obj: Obj): void {
    const spec = (obj.spec ??= {}) as {
      type?: string;
      clusterIP?: string;
      ports?: { nodePort?: number; port?: number }[];
    };
    if (!spec.clusterIP) {
      const n = this.nextClusterIp++;
      const prefix = this.options.serviceIpPrefix ?? '10.96';
      spec.clusterIP = `${prefix}.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
    }
    if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') {
      const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
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
            if (!this.nodePorts.has(port)) {
              p.nodePort = port;
              break;
            }
          }
        }
        this.nodePorts.set(p.nodePort!, key);
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
      const n = this.store.list(plural, ns).length;
      if (name in used) used[name] = n;
      if (`count/${plural}` in used) used[`count/${plural}`] = n;
    }
    for (const pod of this.store.list('pods', ns)) {
      for (const [k, v] of Object.entries(podResources(pod))) {
        for (const alias of [k, k.replace(/^requests\./, '')])
          if (alias in used) used[alias] = (used[alias] ?? 0) + v;
      }
    }
    return Object.fromEntries(Object.entries(used).map(([k, v]) => [k, String(v)]));
  }

  private admitQuota(type: ResourceType, obj: Obj, ns: string): void {
    const counted = COUNTED[type.plural];
    const podRes = type.plural === 'pods' ? podResources(obj) : {};
    for (const quota of this.store.list('resourcequotas', ns)) {
      const hard = (quota.spec as { hard?: Record<string, string> })?.hard ?? {};
      const relevant = Object.keys(hard).some(
        (k) =>
          k === counted ||
          k === `count/${type.plural}` ||
          (type.plural === 'pods' && /cpu|memory/.test(k)),
      );
      if (!relevant) continue;
      if (!(quota.status as { hard?: unknown })?.hard) {
        throw new ApiError(
          403,
          'Forbidden',
          `${type.plural} "${obj.metadata.name ?? ''}" is forbidden: status unknown for quota: ${quota.metadata.name}, resource: ${Object.keys(hard).join(',')}`,
        );
      }
      const used = this.usage(ns, hard);
      const requested: Record<string, number> = {};
      if (counted && counted in hard) requested[counted] = 1;
      if (`count/${type.plural}` in hard) requested[`count/${type.plural}`] = 1;
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
