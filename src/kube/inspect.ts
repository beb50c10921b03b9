import { request } from 'node:https';
import {
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Node,
  type V1Pod,
} from './client-node.js';
import type { ApiPermission } from './permissions.js';
import { observedApi } from './reachability.js';

/** What `GET /version` answered, and when the API server says it answered. */
export interface ServerVersion {
  gitVersion: string;
  minor: string;
  /** The API server's clock (its `Date` header), for clock skew. */
  serverDate?: Date;
  /** Local time half-way through the request. */
  localDate: Date;
}

/** The `KubeVirt` resource's parts labvirt depends on. */
export interface KubeVirtInstall {
  name: string;
  namespace: string;
  phase?: string;
  observedVersion?: string;
  /** `spec.configuration.network.permitBridgeInterfaceOnPodNetwork` (KubeVirt's default: true). */
  permitBridgeOnPodNetwork?: boolean;
  /** `spec.configuration.developerConfiguration.useEmulation`: software emulation, no /dev/kvm. */
  useEmulation?: boolean;
}

/**
 * Read-only questions about the host cluster that `labvirt doctor` asks:
 * the API server's version and clock, whether KubeVirt's API is served, the
 * KubeVirt resource, nodes and pods for capacity, and what the current
 * identity may do (SelfSubjectAccessReview). labvirt's own work goes through
 * `HostCluster`; these calls are listed in DOCTOR_PERMISSIONS.
 */
export class ClusterInspector {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly authz: AuthorizationV1Api;

  constructor(
    private readonly kubeConfig: KubeConfig,
    private readonly onRequest: (verb: string, resource: string) => void = () => undefined,
  ) {
    // Readable error answers in the doctor's report (no reachability account).
    this.core = observedApi(kubeConfig.makeApiClient(CoreV1Api));
    this.custom = observedApi(kubeConfig.makeApiClient(CustomObjectsApi));
    this.authz = observedApi(kubeConfig.makeApiClient(AuthorizationV1Api));
  }

  /** The API server's address, for messages. */
  server(): string {
    return this.kubeConfig.getCurrentCluster()?.server ?? '(no cluster)';
  }

  /** `GET /version` with the response's `Date` header (client-node keeps only bodies). */
  async version(timeoutMs = 10_000): Promise<ServerVersion> {
    const url = new URL('/version', this.server());
    const options: Parameters<typeof request>[1] = {
      method: 'GET',
      headers: { accept: 'application/json' },
      timeout: timeoutMs,
    };
    await this.kubeConfig.applyToHTTPSOptions(options);
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const req = request(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const localDate = new Date((started + Date.now()) / 2);
          const body = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) {
            reject(new Error(`GET /version answered ${res.statusCode}: ${body.slice(0, 200)}`));
            return;
          }
          try {
            const v = JSON.parse(body) as { gitVersion?: string; minor?: string };
            const date = res.headers.date ? new Date(res.headers.date) : undefined;
            resolve({
              gitVersion: v.gitVersion ?? 'unknown',
              minor: (v.minor ?? '').replace(/\D+$/, ''),
              serverDate: date && !Number.isNaN(date.getTime()) ? date : undefined,
              localDate,
            });
          } catch {
            reject(new Error(`GET /version did not answer JSON: ${body.slice(0, 200)}`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** The resources the API server serves in `group/version` (discovery); empty when the group is not served. */
  async servedResources(group: string, version: string): Promise<string[]> {
    try {
      const list = (await this.custom.getAPIResources({ group, version })) as {
        resources?: { name: string }[];
      };
      return (list.resources ?? []).map((r) => r.name);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return [];
      throw err;
    }
  }

  /** KubeVirt resources in `namespace` (one per install; virt-operator manages it). */
  async kubevirtInstalls(namespace: string): Promise<KubeVirtInstall[]> {
    this.onRequest('list', 'KubeVirt');
    const list = (await this.custom.listNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace,
      plural: 'kubevirts',
    })) as { items?: KubeVirtObject[] };
    return (list.items ?? []).map((kv) => ({
      name: kv.metadata?.name ?? '',
      namespace: kv.metadata?.namespace ?? namespace,
      phase: kv.status?.phase,
      observedVersion: kv.status?.observedKubeVirtVersion,
      permitBridgeOnPodNetwork: kv.spec?.configuration?.network?.permitBridgeInterfaceOnPodNetwork,
      useEmulation: kv.spec?.configuration?.developerConfiguration?.useEmulation,
    }));
  }

  async nodes(): Promise<V1Node[]> {
    this.onRequest('list', 'Node');
    return (await this.core.listNode({})).items;
  }

  /** Pods that hold resources on their nodes (not finished), all namespaces. */
  async runningPods(): Promise<V1Pod[]> {
    this.onRequest('list', 'Pod');
    const list = await this.core.listPodForAllNamespaces({
      fieldSelector: 'status.phase!=Succeeded,status.phase!=Failed',
    });
    return list.items;
  }

  /** Creates a pod (doctor's image pull probe); returns it as created. */
  async createPod(namespace: string, pod: V1Pod): Promise<V1Pod> {
    this.onRequest('create', 'Pod');
    return this.core.createNamespacedPod({ namespace, body: pod });
  }

  async readPod(namespace: string, name: string): Promise<V1Pod> {
    this.onRequest('get', 'Pod');
    return this.core.readNamespacedPod({ namespace, name });
  }

  /** Deletes a pod at once; one already gone is no error. */
  async deletePod(namespace: string, name: string): Promise<void> {
    this.onRequest('delete', 'Pod');
    try {
      await this.core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }

  /** The namespace of the kubeconfig's current context, if it names one. */
  contextNamespace(): string | undefined {
    const name = this.kubeConfig.getCurrentContext();
    return this.kubeConfig.getContextObject(name)?.namespace;
  }

  /** Whether the current identity may make this call (cluster-wide when no namespace is given). */
  async mayI(
    p: Pick<ApiPermission, 'group' | 'resource' | 'verb'>,
    namespace?: string,
    name?: string,
  ) {
    const [resource, subresource] = p.resource.split('/');
    const review = await this.authz.createSelfSubjectAccessReview({
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SelfSubjectAccessReview',
        spec: {
          resourceAttributes: {
            group: p.group,
            resource,
            subresource,
            verb: p.verb,
            namespace,
            name,
          },
        },
      },
    });
    return { allowed: review.status?.allowed === true, reason: review.status?.reason };
  }
}

interface KubeVirtObject {
  metadata?: { name?: string; namespace?: string };
  spec?: {
    configuration?: {
      network?: { permitBridgeInterfaceOnPodNetwork?: boolean };
      developerConfiguration?: { useEmulation?: boolean };
    };
  };
  status?: { phase?: string; observedKubeVirtVersion?: string };
}
