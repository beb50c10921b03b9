import { createServer, type Server } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { stringify } from 'yaml';
import { issueCertificate, type KeyPairPem } from '../pki/index.js';
import { KubeApi } from './api.js';
import { ClusterEmulation } from './cluster.js';
import { nodeObject, setNodeReadiness, setNodeReady, type NodeReadiness } from './nodes.js';
import { ApiError, CORE_RESOURCES, ObjectStore } from './store.js';
import { listenWithin, type ListenSpec } from './listen.js';

export interface StudentClusterOptions {
  /** The env's namespace on the host cluster (it appears in the serving certificate's names). */
  namespace: string;
  /** The cluster CA labvirt generated, as the control plane's cloud-init carries it. */
  ca: KeyPairPem;
  nodeName: string;
  nodeIp: string;
  /** e.g. `10.95.0.0/16`: the `kubernetes` Service takes its first address. */
  serviceCidr: string;
  /** kubeadm's `controlPlaneEndpoint` host, the server in admin.conf. */
  endpoint: string;
  /** The control plane's name in its host namespace, e.g. `control-plane.nodes` (a certificate SAN, like kubeadm's certSANs). */
  controlPlaneName: string;
  /** Minor version, e.g. `1.30`. */
  kubernetesVersion: string;
  namespaceDeleteDelayMs: number;
  quotaStatusDelayMs: number;
  /** Where its API server listens (default 127.0.0.1, any port). */
  listen?: ListenSpec;
}

export interface StudentNode {
  name: string;
  ip: string;
  role: 'control-plane' | 'worker';
}

/** One student cluster's own API server, as kubeadm leaves it on the control plane's port 6443. */
export interface StudentCluster {
  /** The loopback port behind the guest's 6443 (undefined while the API server is stopped). */
  readonly port: number | undefined;
  readonly store: ObjectStore;
  /** `/etc/kubernetes/admin.conf` as kubeadm writes it (server `https://<endpoint>:6443`). */
  readonly adminConf: string;
  /** The API server's certificate, for `/etc/kubernetes/pki/apiserver.{crt,key}`. */
  readonly serving: KeyPairPem;
  /** A kubelet registers (or re-registers) its Node, Ready. */
  registerNode(node: StudentNode): void;
  /** The kubelet stopped posting status: Ready goes Unknown, as the node controller does. */
  nodeLost(name: string): void;
  /** A registered node's kubelet reports this readiness (written only when it changes). */
  reportReadiness(name: string, readiness: NodeReadiness): void;
  /** Cuts every open watch (as an API server restart or a proxy timeout does). */
  dropWatches(): void;
  /**
   * The API server process stops (a lab that moves kube-apiserver's manifest
   * away) or starts again on the same data: connections to 6443 are refused
   * meanwhile, and the store (etcd) is kept.
   */
  setServing(serving: boolean): Promise<void>;
  stop(): Promise<void>;
}

const PUBLIC_PATHS = new Set(['/version', '/healthz', '/readyz', '/livez']);
const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

/**
 * Starts the student cluster's API server: the sim's own Kubernetes API over
 * a fresh store (core resources only, no KubeVirt), served with a certificate
 * signed by the env's CA, authenticating clients by certificates from that CA
 * (mutual TLS, as kubeadm's admin.conf does). Anonymous requests reach only
 * the health and version endpoints.
 */
export async function startStudentCluster(opts: StudentClusterOptions): Promise<StudentCluster> {
  const [a, b] = opts.serviceCidr.split('.');
  const serviceIpPrefix = `${a ?? '10'}.${b ?? '95'}`;
  const firstServiceIp = `${serviceIpPrefix}.0.1`;
  const serving = await issueCertificate(opts.ca, {
    commonName: 'kube-apiserver',
    usage: 'server',
    // What kubeadm puts in apiserver.crt, plus the certSANs of labvirt's kubeadm config.
    dnsNames: [
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
      opts.nodeName,
      opts.endpoint,
      `${opts.controlPlaneName}.${opts.namespace}.svc`,
    ],
    ipAddresses: [firstServiceIp, opts.nodeIp],
  });
  const admin = await issueCertificate(opts.ca, {
    commonName: 'kubernetes-admin',
    organization: 'kubeadm:cluster-admins',
    usage: 'client',
  });

  const store = new ObjectStore(10_000, CORE_RESOURCES);
  const cluster = new ClusterEmulation(store, {
    namespaceDeleteDelayMs: opts.namespaceDeleteDelayMs,
    quotaStatusDelayMs: opts.quotaStatusDelayMs,
    serviceIpPrefix,
    rootCaPem: opts.ca.certPem,
  });
  for (const name of SYSTEM_NAMESPACES)
    cluster.seed('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  cluster.seed('services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'kubernetes',
      namespace: 'default',
      labels: { component: 'apiserver', provider: 'kubernetes' },
    },
    spec: {
      type: 'ClusterIP',
      clusterIP: firstServiceIp,
      ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }],
    },
  });

  const authenticate = (req: IncomingMessage, path: string): void => {
    const socket = req.socket as TLSSocket;
    if (socket.authorized) return;
    const presented = Object.keys(socket.getPeerCertificate?.() ?? {}).length > 0;
    // A certificate from another CA is bad credentials; none at all is system:anonymous.
    if (presented || req.headers.authorization)
      throw new ApiError(401, 'Unauthorized', 'Unauthorized');
    if (PUBLIC_PATHS.has(path)) return;
    const verb = (req.method ?? 'GET').toLowerCase();
    throw new ApiError(
      403,
      'Forbidden',
      `forbidden: User "system:anonymous" cannot ${verb} path "${path}"`,
    );
  };
  const api = new KubeApi(
    store,
    authenticate,
    {
      beforeCreate: (t, o, w) => cluster.beforeCreate(t, o, w),
      beforeUpdate: (t, o, old, w) => cluster.beforeUpdate(t, o, old, w),
      onDelete: (t, o, w) => cluster.onDelete(t, o, w),
    },
    { kubernetesVersion: opts.kubernetesVersion, adminEndpoint: false },
  );
  const server: Server = createServer(
    {
      cert: serving.certPem,
      key: serving.keyPem,
      ca: [opts.ca.certPem],
      requestCert: true,
      // Refusals are the API server's job (401/403 Status bodies), not the TLS layer's.
      rejectUnauthorized: false,
    },
    (req, res) => void api.handle(req, res),
  );
  let port: number | undefined = await listenWithin(server, opts.listen);

  const adminConf = stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'kubernetes',
        cluster: {
          server: `https://${opts.endpoint}:6443`,
          'certificate-authority-data': Buffer.from(opts.ca.certPem).toString('base64'),
        },
      },
    ],
    contexts: [
      {
        name: 'kubernetes-admin@kubernetes',
        context: { cluster: 'kubernetes', user: 'kubernetes-admin' },
      },
    ],
    'current-context': 'kubernetes-admin@kubernetes',
    preferences: {},
    users: [
      {
        name: 'kubernetes-admin',
        user: {
          'client-certificate-data': Buffer.from(admin.certPem).toString('base64'),
          'client-key-data': Buffer.from(admin.keyPem).toString('base64'),
        },
      },
    ],
  });

  const registerNode = (node: StudentNode): void => {
    if (setNodeReady(store, node.name, true, node.ip)) return;
    const controlPlane = node.role === 'control-plane';
    store.create(
      'nodes',
      nodeObject({
        name: node.name,
        cpu: controlPlane ? 2 : 1,
        memory: (controlPlane ? 1536 : 1024) * 2 ** 20,
        ready: true,
        internalIp: node.ip,
        kubeletVersion: `v${opts.kubernetesVersion}.0`,
        labels: controlPlane
          ? {
              'node-role.kubernetes.io/control-plane': '',
              'node.kubernetes.io/exclude-from-external-load-balancers': '',
            }
          : {},
        taints: controlPlane
          ? [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }]
          : undefined,
      }),
    );
  };
  registerNode({ name: opts.nodeName, ip: opts.nodeIp, role: 'control-plane' });

  const closeServer = async () => {
    api.dropWatches();
    server.closeAllConnections();
    if (server.listening) await new Promise<void>((r) => server.close(() => r()));
  };
  return {
    get port() {
      return port;
    },
    store,
    adminConf,
    serving,
    registerNode,
    nodeLost(name) {
      setNodeReady(store, name, false);
    },
    reportReadiness(name, readiness) {
      setNodeReadiness(store, name, readiness);
    },
    dropWatches: () => api.dropWatches(),
    async setServing(on) {
      if (on === server.listening) return;
      if (!on) {
        port = undefined;
        return closeServer();
      }
      port = await listenWithin(server, opts.listen);
    },
    async stop() {
      cluster.stop();
      port = undefined;
      await closeServer();
    },
  };
}
