import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { generateCa, issueCertificate } from '../pki/index.js';
import type { GuestResolver } from '../ssh/index.js';
import { KubeApi, noApiFaults, type FaultState } from './api.js';
import { ClusterEmulation } from './cluster.js';
import {
  KubeVirtEmulation,
  noKubeVirtFaults,
  type KubeVirtFaults,
  type KubeVirtTimings,
  type SimNode,
} from './kubevirt.js';
import { nodeObject, setNodeReady } from './nodes.js';
import { NodePortProxy } from './nodeports.js';
import { BOOTSTRAP_POLICY, Rbac, type RbacDecision } from './rbac.js';
import { ApiError, ObjectStore, RESOURCES } from './store.js';
import { PodEmulation } from './pods.js';
import { WriteValidator } from './validation.js';
import { checkGuestSandbox, findKubectl } from './guest/index.js';
import { LOOPBACK, listenWithin, type ListenSpec } from './listen.js';

const POD_TYPE = RESOURCES.find((r) => r.plural === 'pods')!;
/** The KubeVirt version the sim's KubeVirt resource reports (the schemas' release). */
const SIM_KUBEVIRT_VERSION = 'v1.9.0';

export interface SimOptions {
  /** Where the kubeconfig, guests.json and guest sandboxes go. */
  dir: string;
  port?: number;
  /**
   * How much faster than a real cluster: delays are divided by it. 1 is close
   * to a containerDisk boot (scheduling 1 s, boot 25 s, agent 5 s, kubeadm
   * bootstrap 90 s); tests use 100–1000.
   */
  speed?: number;
  /**
   * Explicit delays in milliseconds, taking precedence over `speed` for the
   * ones given (e.g. a slower image pull: `{ bootMs: 60_000 }`).
   */
  timings?: Partial<KubeVirtTimings>;
  nodes?: number;
  nodeCpu?: number;
  /** Bytes per node. */
  nodeMemory?: number;
  /** Start SSH guests for running VMIs (off for the 3,000-VM benchmark). */
  guests?: boolean;
  namespaceDeleteDelayMs?: number;
  quotaStatusDelayMs?: number;
  /** Changes kept for watch resumption; older resourceVersions get 410. */
  historyLimit?: number;
  /** How often watches with `allowWatchBookmarks` get a BOOKMARK (default 60 s, as a real API server). */
  bookmarkIntervalMs?: number;
  /**
   * Validate client writes against the schemas like a real API server
   * (default true; off only to measure what validation costs).
   */
  validation?: boolean;
  /** Address and port range of every server the sim starts (default 127.0.0.1, any port). */
  listen?: ListenSpec;
  /**
   * Run the plain pods clients create (not KubeVirt's launchers) like a
   * kubelet: the image is pulled, the command exits 0. Off by default, so
   * pods stay as created for tests that pin them; on when `missingImages` is given.
   */
  runPods?: boolean;
  /**
   * Image references that cannot be pulled: a plain pod using one ends in
   * `ErrImagePull` / `ImagePullBackOff` (e.g. to stage doctor's image check).
   */
  missingImages?: string[];
  /**
   * Run guests without a sandbox where bubblewrap's namespaces are not
   * available (default: the environment variable
   * `LABVIRT_SIM_UNSANDBOXED_GUESTS=1`); otherwise the sim refuses to start
   * guests there. See docs/simulator.md.
   */
  allowUnsandboxedGuests?: boolean;
  /** The kubectl given to guests (default: the one `findKubectl` finds). */
  guestKubectl?: string;
  /**
   * Stop an idle sandboxed guest's helper process after this many seconds
   * (its files stay; the next command, connection or listener starts it
   * again, paying a process start). A guest is idle when no command runs
   * in it, no process of it is left (a background job keeps it) and no
   * connection is being opened. Default 0: helpers stay, so a claim's first
   * commands pay no start. See src/sim/README.md ("Idle guests").
   */
  guestIdleStopSeconds?: number;
}

export interface SimHandle {
  url: string;
  token: string;
  caPem: string;
  kubeconfigPath: string;
  kubeConfigYaml: string;
  guestMapPath: string;
  resolveGuest: GuestResolver;
  faults: FaultState &
    KubeVirtFaults & {
      dropWatches(): void;
      failNode(name: string): void;
      /**
       * The VM `name` in `namespace` restarts (a drain, a crash): a new VMI
       * with a new uid, its guest reset to the image. Throws 404/409 as
       * KubeVirt's `restart` does for a missing or stopped VM.
       */
      restartVm(namespace: string, name: string): void;
      /**
       * The guest agent of VMI `name` reports `ip` as its address (what a
       * student with root in the guest can do): `status.interfaces[0]` changes,
       * the launcher pod's `status.podIP` does not.
       */
      reportGuestAddress(namespace: string, name: string, ip: string): void;
      reset(): void;
      /** The env's student API server stops (`false`) or serves again on the same data (`true`). */
      studentApiServing(namespace: string, serving: boolean): Promise<void>;
      /** Cuts the open watches on the env's student API server. */
      dropStudentWatches(namespace: string): void;
      /**
       * Compacts the student cluster's history up to now (as etcd compaction
       * does): a watch resumed from an older resourceVersion gets 410 Gone.
       */
      compactStudentHistory(namespace: string): void;
    };
  nodes: SimNode[];
  /** The nodes' InternalIPs (loopback addresses): where NodePort Services listen. */
  nodeAddresses: string[];
  store: ObjectStore;
  /** False when KubeVirt's CRD schemas were not found: VMs and VMIs then go unvalidated. */
  validatesKubevirt: boolean;
  /**
   * Whether a guest's command can reach its student API server on
   * 127.0.0.1:6443 with `openssl s_client` (labvirt's `guest` TLS relay):
   * guests sandboxed in their own network namespace, and an openssl under
   * /usr, which they see. Unsandboxed guests share the host's loopback.
   */
  guestsRunOpensslRelay: boolean;
  /**
   * A kubeconfig (written next to the admin's, mode 0600) that authenticates
   * as an existing ServiceAccount with a token from TokenRequest; RBAC then
   * decides what it may do. Returns its path.
   */
  kubeconfigFor(namespace: string, serviceAccount: string): string;
  /** RBAC decisions for callers other than the admin, oldest first. */
  rbacDecisions: readonly RbacDecision[];
  stop(): Promise<void>;
}

/** Starts a simulated KubeVirt host cluster over HTTPS (on 127.0.0.1 unless `listen` says otherwise). */
export async function startSim(options: SimOptions): Promise<SimHandle> {
  const listen = options.listen ?? LOOPBACK;
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const speed = options.speed ?? 1;
  const ca = await generateCa({ commonName: 'labvirt-sim-ca', algorithm: 'ecdsa' });
  const serving = await issueCertificate(ca, {
    commonName: 'labvirt-sim',
    usage: 'server',
    ipAddresses: [...new Set(['127.0.0.1', listen.host])],
    dnsNames: ['localhost'],
  });
  const token = randomBytes(24).toString('hex');
  const store = new ObjectStore(options.historyLimit ?? 10_000);
  // A real namespace controller takes ~5–6 s for an emptied namespace (discovery, one
  // deletecollection per resource type, then finalize): so does the sim at speed 1.
  const namespaceDeleteDelayMs = options.namespaceDeleteDelayMs ?? Math.round(5_500 / speed);
  const quotaStatusDelayMs = options.quotaStatusDelayMs ?? Math.round(3_000 / speed);
  const cluster = new ClusterEmulation(store, {
    namespaceDeleteDelayMs,
    quotaStatusDelayMs,
    rootCaPem: ca.certPem,
  });
  // What every cluster has before anyone uses it (KubeVirt's own namespace included).
  for (const name of ['default', 'kube-system', 'kube-public', 'kube-node-lease', 'kubevirt'])
    cluster.seed('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  const rbac = new Rbac(store);
  for (const o of BOOTSTRAP_POLICY)
    cluster.seed(o.kind === 'ClusterRole' ? 'clusterroles' : 'clusterrolebindings', o);
  // What virt-operator leaves once KubeVirt is deployed (defaults: bridge binding permitted, KVM).
  cluster.seed('kubevirts', {
    apiVersion: 'kubevirt.io/v1',
    kind: 'KubeVirt',
    metadata: { name: 'kubevirt', namespace: 'kubevirt' },
    spec: { configuration: { developerConfiguration: { featureGates: [] } } },
    status: { phase: 'Deployed', observedKubeVirtVersion: SIM_KUBEVIRT_VERSION },
  });
  const nodes: SimNode[] = Array.from({ length: options.nodes ?? 4 }, (_, i) => ({
    name: `sim-node-${i + 1}`,
    cpu: options.nodeCpu ?? 64,
    memory: options.nodeMemory ?? 256 * 2 ** 30,
    ready: true,
  }));
  // This sim's own loopback block, 127.X.0.0/16: nodes at 127.X.0.N, guests from 127.X.1.1.
  const loopbackOctet = 16 + randomInt(230);
  const nodeAddresses = nodes.map((_, i) => `127.${loopbackOctet}.0.${i + 1}`);
  // The host's nodes, as their kubelets register them (what `kubectl get nodes` shows).
  nodes.forEach((n, i) =>
    store.create(
      'nodes',
      nodeObject({
        ...n,
        internalIp: nodeAddresses[i],
        labels: { 'kubevirt.io/schedulable': 'true', 'node-role.kubernetes.io/worker': '' },
      }),
    ),
  );
  const guestMapPath = join(dir, 'guests.json');
  const failNode = (name: string) => {
    kubevirt.failNode(name);
    setNodeReady(store, name, false);
  };
  let writeTimer: NodeJS.Timeout | undefined;
  // Guests stopping at the end change the map too: not written once stopped (its directory may be gone).
  let stopped = false;
  const guests = options.guests ?? true;
  const allowUnsandboxedGuests =
    options.allowUnsandboxedGuests ?? process.env.LABVIRT_SIM_UNSANDBOXED_GUESTS === '1';
  // Refused here, before anything listens, rather than at the first VM's boot.
  const sandbox = guests ? checkGuestSandbox(allowUnsandboxedGuests) : undefined;
  const guestKubectl = guests ? (options.guestKubectl ?? (await findKubectl())) : undefined;
  const kubevirt: KubeVirtEmulation = new KubeVirtEmulation(
    store,
    nodes,
    {
      schedulingMs: Math.round(1_000 / speed),
      bootMs: Math.round(25_000 / speed),
      agentMs: Math.round(5_000 / speed),
      bootstrapMs: Math.round(90_000 / speed),
      kubeletHeartbeatMs: Math.max(1_000, Math.round(10_000 / speed)),
      ...options.timings,
    },
    {
      dataDir: dir,
      guests,
      allowUnsandboxedGuests,
      guestKubectl,
      guestIdleStopMs: Math.round((options.guestIdleStopSeconds ?? 0) * 1000),
      listen,
      studentCluster: { namespaceDeleteDelayMs, quotaStatusDelayMs },
      loopbackOctet,
      admitLauncher: (pod) => cluster.admitInternal(POD_TYPE, pod),
      onGuestsChanged: () => {
        // Written atomically, a little batched: standalone labvirt reads it per connection.
        if (stopped) return;
        writeTimer ??= setTimeout(() => {
          writeTimer = undefined;
          if (stopped) return;
          try {
            writeFileSync(`${guestMapPath}.tmp`, JSON.stringify(kubevirt.guestMap()));
            renameSync(`${guestMapPath}.tmp`, guestMapPath);
          } catch (err) {
            // The sim's directory may go with a stop racing this write.
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
        }, 10);
      },
    },
  );
  writeFileSync(guestMapPath, '{}');
  // Plain pods (doctor's image pull probe): the image is pulled, the command exits.
  const pods =
    options.runPods || options.missingImages?.length
      ? new PodEmulation(store, {
          missingImages: options.missingImages ?? [],
          pullMs: Math.round(2_000 / speed),
        })
      : undefined;
  const nodePortProxy = new NodePortProxy(store, nodeAddresses, kubevirt.resolveGuest);
  /** Every fault off: the API's and KubeVirt's. */
  const resetFaults = () => {
    Object.assign(api.faults, noApiFaults());
    Object.assign(kubevirt.faults, noKubeVirtFaults());
  };
  const applyFaults = (changes: Record<string, unknown>): Record<string, unknown> => {
    const num = (v: unknown, min: number, max: number) =>
      typeof v === 'number' && v >= min && v <= max ? v : undefined;
    if (changes.reset === true) resetFaults();
    const errorRate = num(changes.errorRate, 0, 1);
    if (errorRate !== undefined) api.faults.errorRate = errorRate;
    if (changes.errorCode === 500 || changes.errorCode === 429)
      api.faults.errorCode = changes.errorCode;
    const latencyMs = num(changes.latencyMs, 0, 60_000);
    if (latencyMs !== undefined) api.faults.latencyMs = latencyMs;
    const deleteAnswerDelayMs = num(changes.deleteAnswerDelayMs, 0, 60_000);
    if (deleteAnswerDelayMs !== undefined) api.faults.deleteAnswerDelayMs = deleteAnswerDelayMs;
    const failNext = num(changes.failNextVmis, 0, 10_000);
    if (failNext !== undefined) kubevirt.faults.failNextVmis = failNext;
    const neverReady = num(changes.neverReadyVmis, 0, 10_000);
    if (neverReady !== undefined) kubevirt.faults.neverReadyVmis = neverReady;
    const slowGuest = num(changes.slowGuestCommandsMs, 0, 600_000);
    if (slowGuest !== undefined) kubevirt.faults.slowGuestCommandsMs = slowGuest;
    const slowInit = num(changes.slowKubeadmInitMs, 0, 600_000);
    if (slowInit !== undefined) kubevirt.faults.slowKubeadmInitMs = slowInit;
    if (changes.dropWatches === true) api.dropWatches();
    if (typeof changes.failNode === 'string') failNode(changes.failNode);
    // `{"restartVm": "<namespace>/<vm>"}`
    if (typeof changes.restartVm === 'string') {
      const [namespace, name] = changes.restartVm.split('/');
      if (namespace && name) kubevirt.restartVm(namespace, name);
    }
    return { ...api.faults, ...kubevirt.faults };
  };
  const validator = new WriteValidator(options.validation ?? true);
  const api: KubeApi = new KubeApi(
    store,
    token,
    {
      setFaults: (changes) => applyFaults(changes),
      beforeCreate: (t, o, w) => cluster.beforeCreate(t, o, w),
      beforeUpdate: (t, o, old, w) => cluster.beforeUpdate(t, o, old, w),
      onDelete: (t, o, w) => cluster.onDelete(t, o, w),
      subresource: (t, ns, name, sub) => kubevirt.subresource(t, ns, name, sub),
      podLog: (ns, pod, container) => kubevirt.podLog(ns, pod, container),
    },
    { validator, bookmarkIntervalMs: options.bookmarkIntervalMs, access: rbac },
  );
  const server: Server = createServer(
    { cert: serving.certPem, key: serving.keyPem },
    (req, res) => {
      void api.handle(req, res);
    },
  );
  // As kube-apiserver (Go's net/http): no Keep-Alive hint in its answers, so
  // a client's own idle timeout decides how long a connection is kept (Node's
  // server would otherwise announce one, which hides what a real cluster does).
  server.keepAliveTimeout = 0;
  const port = options.port
    ? await listenWithin(server, {
        host: listen.host,
        ports: { from: options.port, to: options.port },
      })
    : await listenWithin(server, listen);
  const url = `https://${listen.host}:${port}`;
  /** A kubeconfig for this API as `user` with a bearer token, in context `context`. */
  const kubeconfigYaml = (
    user: string,
    userToken: string,
    context: string,
    namespace?: string,
  ): string =>
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'labvirt-sim',
          cluster: {
            server: url,
            'certificate-authority-data': Buffer.from(ca.certPem).toString('base64'),
          },
        },
      ],
      users: [{ name: user, user: { token: userToken } }],
      contexts: [
        {
          name: context,
          context: { cluster: 'labvirt-sim', user, ...(namespace && { namespace }) },
        },
      ],
      'current-context': context,
    });
  const kubeconfigPath = join(dir, 'kubeconfig');
  const kubeConfigYaml = kubeconfigYaml('labvirt', token, 'labvirt-sim');
  writeFileSync(kubeconfigPath, kubeConfigYaml, { mode: 0o600 });
  const kubeconfigFor = (namespace: string, serviceAccount: string): string => {
    const sa = store.get('serviceaccounts', namespace, serviceAccount);
    if (!sa) throw new ApiError(404, 'NotFound', `serviceaccounts "${serviceAccount}" not found`);
    const { token: saToken } = rbac.issueToken(sa, { expirationSeconds: 24 * 3600 });
    const user = `${namespace}-${serviceAccount}`;
    const path = join(dir, `kubeconfig-${user}`);
    writeFileSync(path, kubeconfigYaml(user, saToken, user, namespace), { mode: 0o600 });
    return path;
  };

  const faults = Object.assign(api.faults, kubevirt.faults, {
    dropWatches: () => api.dropWatches(),
    failNode: (name: string) => failNode(name),
    restartVm: (namespace: string, name: string) => kubevirt.restartVm(namespace, name),
    reportGuestAddress: (namespace: string, name: string, ip: string) =>
      kubevirt.reportGuestAddress(namespace, name, ip),
    studentApiServing: async (namespace: string, serving: boolean) => {
      const inner = kubevirt.studentCluster(namespace);
      if (!inner) throw new Error(`no student cluster runs in ${namespace}`);
      await inner.setServing(serving);
      kubevirt.guestsChanged();
    },
    dropStudentWatches: (namespace: string) => kubevirt.studentCluster(namespace)?.dropWatches(),
    compactStudentHistory: (namespace: string) =>
      void kubevirt.studentCluster(namespace)?.store.history.splice(0),
    reset: resetFaults,
  });
  // One object for callers; the emulations read their own halves.
  Object.defineProperty(faults, 'failNextVmis', {
    get: () => kubevirt.faults.failNextVmis,
    set: (v: number) => (kubevirt.faults.failNextVmis = v),
  });
  Object.defineProperty(faults, 'neverReadyVmis', {
    get: () => kubevirt.faults.neverReadyVmis,
    set: (v: number) => (kubevirt.faults.neverReadyVmis = v),
  });
  Object.defineProperty(faults, 'slowGuestCommandsMs', {
    get: () => kubevirt.faults.slowGuestCommandsMs,
    set: (v: number) => (kubevirt.faults.slowGuestCommandsMs = v),
  });
  Object.defineProperty(faults, 'slowKubeadmInitMs', {
    get: () => kubevirt.faults.slowKubeadmInitMs,
    set: (v: number) => (kubevirt.faults.slowKubeadmInitMs = v),
  });

  return {
    url,
    token,
    caPem: ca.certPem,
    kubeconfigPath,
    kubeConfigYaml,
    guestMapPath,
    resolveGuest: kubevirt.resolveGuest,
    faults: faults as SimHandle['faults'],
    nodes,
    nodeAddresses,
    store,
    validatesKubevirt: validator.kubevirtChecked,
    guestsRunOpensslRelay: sandbox?.bwrap !== undefined && hostHasOpensslUnderUsr(),
    kubeconfigFor,
    rbacDecisions: rbac.decisions,
    async stop() {
      stopped = true;
      if (writeTimer) clearTimeout(writeTimer);
      api.dropWatches();
      cluster.stop();
      pods?.stop();
      await nodePortProxy.stop();
      await kubevirt.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
export type { KubeVirtTimings } from './kubevirt.js';
export type { RbacDecision } from './rbac.js';
export { NoFreePortError, type ListenSpec } from './listen.js';

/** Sandboxed guests see the host's /usr and nothing else of it: an openssl there is theirs. */
function hostHasOpensslUnderUsr(): boolean {
  return (process.env.PATH ?? '')
    .split(':')
    .some((dir) => dir.startsWith('/usr/') && existsSync(join(dir, 'openssl')));
}
