import { NetworkingV1Api, type V1NetworkPolicy, type V1Service } from '../kube/client-node.js';
import type { Config } from '../config/index.js';
import type { HostCluster } from '../kube/index.js';
import { LABELS, MANAGED_BY, isApiError, isQuotaExceeded } from '../kube/index.js';
import { MIRROR_POLICY, SYNC_ANNOTATIONS, SYNC_LABELS } from './names.js';
import type { PlannedMirror, Protocol, RefusedPort } from './plan.js';

/** A student port published on the host, as the student is shown it. */
export interface PublishedPort {
  /** `namespace/service` in the student's cluster. */
  service: string;
  port: number;
  protocol: Protocol;
  /** The nodePort inside the student's cluster (the mirror's targetPort). */
  studentNodePort: number;
  /** The nodePort the host allocated. */
  hostNodePort: number;
  /** `<publicHost>:<hostNodePort>`: where to connect from outside. */
  address: string;
}

export const MIRROR_SELECTOR = `${SYNC_LABELS.component}=mirror`;

/** The env's mirrors and their policy on the host. */
export interface HostState {
  services: V1Service[];
  policy: V1NetworkPolicy | undefined;
}

/** The host API calls the sync makes, in one place (they are what deploy/rbac.yaml grants). */
export class HostMirrors {
  private readonly networking: NetworkingV1Api;
  private publicHostCache?: { host: string; at: number };

  constructor(
    private readonly cluster: HostCluster,
    private readonly config: Config,
  ) {
    this.networking = cluster.makeApiClient(NetworkingV1Api);
  }

  async list(namespace: string): Promise<V1Service[]> {
    this.cluster.recordRequest('list', 'Service');
    const list = await this.cluster.core.listNamespacedService({
      namespace,
      labelSelector: MIRROR_SELECTOR,
    });
    return list.items;
  }

  private async readService(namespace: string, name: string): Promise<V1Service | undefined> {
    this.cluster.recordRequest('get', 'Service');
    try {
      return await this.cluster.core.readNamespacedService({ namespace, name });
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw err;
    }
  }

  /** The env's mirror NetworkPolicy, if there is one. */
  async readPolicy(namespace: string): Promise<V1NetworkPolicy | undefined> {
    this.cluster.recordRequest('get', 'NetworkPolicy');
    try {
      return await this.networking.readNamespacedNetworkPolicy({ namespace, name: MIRROR_POLICY });
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw err;
    }
  }

  /**
   * Moves the env's mirrors to `mirrors`, starting from `state` (what the
   * host has, as last read or written): deletes what is no longer wanted
   * first (a changed set of ports never needs more quota than it ends with),
   * then creates what is missing, replaces what differs and sets the
   * NetworkPolicy to open exactly the mirrored target ports — at once, so a
   * new mirror is usable after one round trip — and removes the policy with
   * the last mirror. Returns the host's state afterwards and the ports the
   * host refused (its quota), which are reported like any other refusal.
   */
  async apply(
    env: { envId: string; namespace: string },
    mirrors: readonly PlannedMirror[],
    state: HostState,
  ): Promise<{ state: HostState; refused: RefusedPort[] }> {
    const byName = new Map(state.services.map((s) => [s.metadata?.name ?? '', s]));
    const wanted = new Set(mirrors.map((m) => m.name));
    // The policy first, then the Services: a port opens before its address
    // exists (the session view lists a mirror as soon as its Service does, and
    // a student connecting then must get through), and closes before its
    // mirror goes (nothing stays open for an unpublished port). One round
    // trip more per change than sending them together.
    const policy = await this.setPolicy(env, mirrors, state.policy);
    const deletions: Promise<void>[] = [];
    for (const [name] of byName)
      if (!wanted.has(name)) {
        deletions.push(this.deleteService(env.namespace, name));
        byName.delete(name);
      }
    const refused: RefusedPort[] = [];
    const writes = mirrors.map(async (m): Promise<V1Service | undefined> => {
      const body = this.render(env, m);
      const current = byName.get(m.name);
      try {
        if (!current) {
          this.cluster.recordRequest('create', 'Service');
          return await this.cluster.core.createNamespacedService({
            namespace: env.namespace,
            body,
          });
        }
        if (sameMirror(current, body)) return current;
        // Ports are replaced whole; the host keeps its nodePort when protocol and port stay.
        const keep = current.spec?.ports?.[0];
        if (keep?.nodePort && keep.protocol === m.protocol)
          body.spec!.ports![0]!.nodePort = keep.nodePort;
        body.metadata!.resourceVersion = current.metadata?.resourceVersion;
        body.spec!.clusterIP = current.spec?.clusterIP;
        this.cluster.recordRequest('update', 'Service');
        return await this.cluster.core.replaceNamespacedService({
          namespace: env.namespace,
          name: m.name,
          body,
        });
      } catch (err) {
        const quotaFull = isQuotaExceeded(err);
        if (!current && (isApiError(err, 409) || quotaFull)) {
          // Another replica made it a moment ago: the API server says so with
          // 409, or, with the quota full, with 403 (quota admission answers
          // before the name is found taken). Read what it made.
          const made = await this.readService(env.namespace, m.name);
          if (made) return made;
        }
        if (quotaFull) {
          refused.push({
            service: `${m.namespace}/${m.service}`,
            port: m.port,
            protocol: m.protocol,
            reason: "the lab's quota of published ports is used up",
          });
          return undefined;
        }
        throw err;
      }
    });
    const [services] = await Promise.all([Promise.all(writes), Promise.all(deletions)]);
    const live = services.filter((s): s is V1Service => s !== undefined);
    // A mirror the host refused opens nothing: the policy follows what exists.
    const finalPolicy =
      live.length === mirrors.length
        ? policy
        : await this.setPolicy(
            env,
            mirrors.filter((m) => live.some((s) => s.metadata?.name === m.name)),
            policy,
          );
    return { state: { services: live, policy: finalPolicy }, refused };
  }

  /**
   * Every mirror of the env and its policy go (session end). The policy is
   * read first and deleted only when there is one: most envs seen inactive
   * (every new one) never had mirrors, and a read costs the API server less
   * than a write.
   */
  async removeAll(namespace: string): Promise<number> {
    const [existing, policy] = await Promise.all([
      this.list(namespace),
      this.readPolicy(namespace),
    ]);
    // Closed first, as in apply(): no port stays open for a mirror that is going.
    if (policy) await this.deletePolicy(namespace);
    for (const s of existing) await this.deleteService(namespace, s.metadata?.name ?? '');
    return existing.length;
  }

  private render(env: { envId: string; namespace: string }, m: PlannedMirror): V1Service {
    return {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: m.name,
        namespace: env.namespace,
        labels: {
          [LABELS.env]: env.envId,
          [LABELS.managedBy]: MANAGED_BY,
          [SYNC_LABELS.component]: 'mirror',
          [SYNC_LABELS.studentNamespace]: m.namespace,
          [SYNC_LABELS.studentService]: m.service,
          [SYNC_LABELS.studentPort]: String(m.port),
          [SYNC_LABELS.studentProtocol]: m.protocol,
        },
        annotations: { [SYNC_ANNOTATIONS.studentNodePort]: String(m.nodePort) },
      },
      spec: {
        type: 'NodePort',
        // The env's VM pods (template labels): a restarted VM with a new IP is still selected.
        selector: { [LABELS.env]: env.envId },
        ports: [
          {
            name: m.protocol.toLowerCase(),
            protocol: m.protocol,
            port: m.port,
            targetPort: m.nodePort as never,
          },
        ],
      },
    };
  }

  private async setPolicy(
    env: { envId: string; namespace: string },
    live: readonly PlannedMirror[],
    current: V1NetworkPolicy | undefined,
  ): Promise<V1NetworkPolicy | undefined> {
    if (live.length === 0) {
      if (current) await this.deletePolicy(env.namespace);
      return undefined;
    }
    const ports = [...new Map(live.map((m) => [`${m.protocol}/${m.nodePort}`, m])).values()].map(
      (m) => ({ protocol: m.protocol, port: m.nodePort as never }),
    );
    const body: V1NetworkPolicy = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: {
        name: MIRROR_POLICY,
        namespace: env.namespace,
        labels: {
          [LABELS.env]: env.envId,
          [LABELS.managedBy]: MANAGED_BY,
          [SYNC_LABELS.component]: 'mirror',
        },
      },
      spec: {
        podSelector: { matchLabels: { [LABELS.env]: env.envId } },
        policyTypes: ['Ingress'],
        ingress: [
          {
            _from: this.config.sync.allowedSources.map((cidr) => ({ ipBlock: { cidr } })),
            ports,
          },
        ],
      },
    };
    if (!current) {
      this.cluster.recordRequest('create', 'NetworkPolicy');
      try {
        return await this.networking.createNamespacedNetworkPolicy({
          namespace: env.namespace,
          body,
        });
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
        // Made meanwhile (another replica): bring it to this spec.
        current = await this.readPolicy(env.namespace);
        if (!current) throw err;
      }
    }
    if (JSON.stringify(current.spec) === JSON.stringify(body.spec)) return current;
    body.metadata!.resourceVersion = current.metadata?.resourceVersion;
    this.cluster.recordRequest('update', 'NetworkPolicy');
    return this.networking.replaceNamespacedNetworkPolicy({
      namespace: env.namespace,
      name: MIRROR_POLICY,
      body,
    });
  }

  private async deletePolicy(namespace: string) {
    this.cluster.recordRequest('delete', 'NetworkPolicy');
    try {
      await this.networking.deleteNamespacedNetworkPolicy({ namespace, name: MIRROR_POLICY });
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  private async deleteService(namespace: string, name: string) {
    this.cluster.recordRequest('delete', 'Service');
    try {
      await this.cluster.core.deleteNamespacedService({ namespace, name });
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
  }

  /** `sync.publicHost`, else the first Ready host node's ExternalIP (or InternalIP). */
  async publicHost(): Promise<string> {
    if (this.config.sync.publicHost) return this.config.sync.publicHost;
    const cached = this.publicHostCache;
    if (cached && Date.now() - cached.at < 30_000) return cached.host;
    this.cluster.recordRequest('list', 'Node');
    const nodes = (await this.cluster.core.listNode()).items
      .filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
      .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
    const address = (type: string) =>
      nodes.flatMap((n) => n.status?.addresses ?? []).find((a) => a.type === type)?.address;
    const host = address('ExternalIP') ?? address('InternalIP') ?? this.config.ssh.publicHost;
    this.publicHostCache = { host, at: Date.now() };
    return host;
  }

  /** What the env publishes now, read from the mirrors themselves. */
  async published(namespace: string): Promise<PublishedPort[]> {
    const mirrors = await this.list(namespace);
    if (mirrors.length === 0) return [];
    const host = await this.publicHost();
    return publishedFrom(mirrors, host);
  }
}

export function publishedFrom(mirrors: readonly V1Service[], publicHost: string): PublishedPort[] {
  const out: PublishedPort[] = [];
  for (const s of mirrors) {
    const labels = s.metadata?.labels ?? {};
    const p = s.spec?.ports?.[0];
    if (!p?.nodePort) continue;
    out.push({
      service: `${labels[SYNC_LABELS.studentNamespace]}/${labels[SYNC_LABELS.studentService]}`,
      port: Number(labels[SYNC_LABELS.studentPort]),
      protocol: (p.protocol ?? 'TCP') as Protocol,
      studentNodePort: Number(s.metadata?.annotations?.[SYNC_ANNOTATIONS.studentNodePort]),
      hostNodePort: p.nodePort,
      address: `${publicHost}:${p.nodePort}`,
    });
  }
  return out.sort((a, b) => a.service.localeCompare(b.service) || a.port - b.port);
}

function sameMirror(current: V1Service, wanted: V1Service): boolean {
  const a = current.spec?.ports?.[0];
  const b = wanted.spec?.ports?.[0];
  return (
    current.spec?.type === 'NodePort' &&
    a?.protocol === b?.protocol &&
    a?.port === b?.port &&
    String(a?.targetPort) === String(b?.targetPort) &&
    (current.spec?.ports?.length ?? 0) === 1 &&
    JSON.stringify(current.spec?.selector) === JSON.stringify(wanted.spec?.selector) &&
    current.metadata?.annotations?.[SYNC_ANNOTATIONS.studentNodePort] ===
      wanted.metadata?.annotations?.[SYNC_ANNOTATIONS.studentNodePort]
  );
}
