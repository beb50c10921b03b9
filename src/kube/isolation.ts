import type { Config, HostDnsConfig } from '../config/index.js';
import type { KubeObject } from './client.js';
import { LABELS, NODES_SERVICE, SSH_NODEPORT_SERVICE, type NodeName } from './names.js';
import { formatBytes, formatCpu, parseQuantity, toMi } from './quantity.js';
import { launcherEphemeralBytes } from './vm.js';

export interface IsolationInput {
  config: Config;
  namespace: string;
  envId: string;
  nodes: NodeName[];
  /** Labels every object of the env carries. */
  labels: Record<string, string>;
}

const NETPOL = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy' } as const;

/**
 * What keeps an env to itself, as NetworkPolicies on the launcher pods (they
 * carry the VM template's labels). Two policies, the fewest that say it (each
 * is one API write per env; NetworkPolicies add up, so one policy with several
 * rules allows what the same rules in several policies allow):
 * - `default-deny`: every pod of the namespace is isolated both ways, the
 *   env's or not;
 * - `env-traffic`, on the env's pods, allows
 *   - in and out among the env's VMs on any port (kubeadm, kubelet, Calico's
 *     VXLAN, NodePorts inside the student cluster);
 *   - in: port 22 from labvirt's own pods (gateway and executor, both modes),
 *     plus virt-api when `allowVirtctlSsh`;
 *   - out: the host cluster's DNS, as `network.hostDns` says (the guests
 *     resolve the control plane's name through it);
 *   - out: everything outside `network.deniedEgressCidrs` (private ranges by
 *     default: other envs, the host's pods, nodes and cloud metadata);
 * - `allow-ssh-nodeport` (nodeport mode only): port 22 of the control plane
 *   from anywhere, since NodePort traffic arrives from node addresses (a
 *   policy of its own: it selects the control plane alone).
 * Nothing admits traffic from other envs; replies to allowed connections pass.
 */
export function renderNetworkPolicies(input: IsolationInput): KubeObject[] {
  const { config, namespace, envId, labels } = input;
  const meta = (name: string) => ({ name, namespace, labels });
  const envPods = { matchLabels: { [LABELS.env]: envId } };
  const controlPlane = { matchLabels: { [LABELS.env]: envId, [LABELS.node]: 'control-plane' } };
  const ssh = [{ protocol: 'TCP', port: 22 }];

  const sshFrom: Record<string, unknown>[] = [
    {
      namespaceSelector: {
        matchLabels: { 'kubernetes.io/metadata.name': config.network.gatewayNamespace },
      },
      podSelector: { matchLabels: config.network.gatewayPodLabels },
    },
  ];
  if (config.network.allowVirtctlSsh) {
    // virt-api dials the VMI for `virtctl ssh` / port-forward. KubeVirt's
    // namespace differs between installs (kubevirt, openshift-cnv, ...), so
    // the pod label is what identifies it.
    sshFrom.push({
      namespaceSelector: {},
      podSelector: { matchLabels: { 'kubevirt.io': 'virt-api' } },
    });
  }
  const internet = {
    to: [
      {
        ipBlock: {
          cidr: '0.0.0.0/0',
          ...(config.network.deniedEgressCidrs.length > 0
            ? { except: [...config.network.deniedEgressCidrs] }
            : {}),
        },
      },
    ],
  };

  const policies: KubeObject[] = [
    {
      ...NETPOL,
      metadata: meta('default-deny'),
      spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] },
    },
    {
      ...NETPOL,
      metadata: meta('env-traffic'),
      spec: {
        podSelector: envPods,
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ podSelector: envPods }] }, { from: sshFrom, ports: ssh }],
        egress: [{ to: [{ podSelector: envPods }] }, ...hostDnsEgress(config), internet],
      },
    },
  ];
  if (config.ssh.mode === 'nodeport') {
    policies.push({
      ...NETPOL,
      metadata: meta('allow-ssh-nodeport'),
      spec: { podSelector: controlPlane, policyTypes: ['Ingress'], ingress: [{ ports: ssh }] },
    });
  }
  return policies;
}

interface DnsPeers {
  namespace: string;
  podLabels: Record<string, string>;
  ports: number[];
  addresses: string[];
}

/** The presets of `network.hostDns.preset`. */
export const HOST_DNS_PRESETS: Record<HostDnsConfig['preset'], DnsPeers> = {
  'kube-dns': {
    namespace: 'kube-system',
    podLabels: { 'k8s-app': 'kube-dns' },
    ports: [53],
    addresses: [],
  },
  // NodeLocal DNSCache answers on a link-local address on every node, which
  // `deniedEgressCidrs` excludes by default; the kube-dns pods stay as its
  // upstream and as the fallback while the cache restarts.
  nodelocaldns: {
    namespace: 'kube-system',
    podLabels: { 'k8s-app': 'kube-dns' },
    ports: [53],
    addresses: ['169.254.20.10/32'],
  },
  // OpenShift's DNS operator runs CoreDNS in openshift-dns, listening on 5353
  // behind the Service's port 53 (policies see the pod's port).
  openshift: {
    namespace: 'openshift-dns',
    podLabels: { 'dns.operator.openshift.io/daemonset-dns': 'default' },
    ports: [5353, 53],
    addresses: [],
  },
};

/** The host DNS servers the env's VMs may query: the preset, with any field replaced. */
export function hostDnsPeers(config: Config): DnsPeers {
  const dns = config.network.hostDns;
  const preset = HOST_DNS_PRESETS[dns.preset];
  return {
    namespace: dns.namespace ?? preset.namespace,
    podLabels: dns.podLabels ?? preset.podLabels,
    ports: dns.ports ?? preset.ports,
    addresses: dns.addresses ?? preset.addresses,
  };
}

function hostDnsEgress(config: Config): Record<string, unknown>[] {
  const peers = hostDnsPeers(config);
  const ports = peers.ports.flatMap((port) => [
    { protocol: 'UDP', port },
    { protocol: 'TCP', port },
  ]);
  const to: Record<string, unknown>[] = [
    {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': peers.namespace } },
      podSelector: { matchLabels: peers.podLabels },
    },
    ...peers.addresses.map((cidr) => ({ ipBlock: { cidr } })),
  ];
  return [{ to, ports }];
}

/**
 * The headless Service that names every node of the env. With it as the VMs'
 * `subdomain`, the host's DNS answers `<node>.nodes.<ns>.svc.<domain>` with
 * that node's launcher pod IP (the guest's IP under bridge binding, known only
 * once the pod runs), and follows a VM that comes back with a new IP; the
 * guests search that domain (cloud-init), so a student on the control plane
 * reaches `ssh worker-1`. The control plane's name under it,
 * `control-plane.nodes.<ns>.svc.<domain>` (CONTROL_PLANE_NAME), is the
 * cluster's endpoint: the workers' kubeadm join and the API server's
 * certificate use it, and with no kube-proxy hop the certificate and port
 * are the guest's own.
 * `publishNotReadyAddresses` publishes an IP as soon as the pod has one: the
 * workers' join retries until the API answers, and the control plane's own
 * `kubeadm init` uses the name as its endpoint.
 */
export function renderNodesService(input: IsolationInput): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: NODES_SERVICE, namespace: input.namespace, labels: input.labels },
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: { [LABELS.env]: input.envId },
      ports: [{ name: 'ssh', protocol: 'TCP', port: 22, targetPort: 22 }],
    },
  };
}

/** `ssh.mode: nodeport`: the env's own NodePort to the control plane's sshd. */
export function renderSshNodePortService(input: IsolationInput): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: SSH_NODEPORT_SERVICE, namespace: input.namespace, labels: input.labels },
    spec: {
      type: 'NodePort',
      selector: { [LABELS.env]: input.envId, [LABELS.node]: 'control-plane' },
      ports: [{ name: 'ssh', protocol: 'TCP', port: 22, targetPort: 22 }],
    },
  };
}

/** Room per VM for the launcher's small side containers (containerDisk, console log). */
const SIDECAR_MEMORY_MI = 128;
const SIDECAR_CPU = 0.5;

/** Memory a VM's virt-launcher pod requests: guest RAM + KubeVirt's overhead. */
export function launcherMemoryMi(guestMemory: string, vcpus: number): number {
  const guestMi = toMi(parseQuantity(guestMemory));
  // KubeVirt: ≈ 220 MiB fixed + guest RAM / 512 + 8 MiB per vCPU (no video device).
  return Math.ceil(guestMi + 220 + guestMi / 512 + 8 * vcpus);
}

export interface EnvResources {
  pods: number;
  requestsMemoryMi: number;
  cpu: number;
  /** Ephemeral storage the launchers request (data disks and overhead), side containers included. */
  ephemeralStorageBytes: number;
}

/** Ephemeral storage each container that sets none requests (the LimitRange's default). */
const DEFAULT_EPHEMERAL_REQUEST = '64Mi';
/** Containers per launcher pod besides the compute one (containerDisk, console log, hotplug). */
const SIDE_CONTAINERS = 3;

/** What an env's VMs need on the host cluster, side containers included. */
export function envResources(config: Config, nodes: NodeName[]): EnvResources {
  let memoryMi = 0;
  let cpu = 0;
  let ephemeral = 0;
  for (const node of nodes) {
    const res = node === 'control-plane' ? config.vm.controlPlane : config.vm.worker;
    memoryMi += launcherMemoryMi(res.memory, res.cpus) + SIDECAR_MEMORY_MI;
    cpu += parseQuantity(res.cpuLimit) + SIDECAR_CPU;
    ephemeral +=
      launcherEphemeralBytes(res.dataDisk) +
      SIDE_CONTAINERS * parseQuantity(DEFAULT_EPHEMERAL_REQUEST);
  }
  return {
    pods: nodes.length + 1,
    requestsMemoryMi: memoryMi,
    cpu,
    ephemeralStorageBytes: ephemeral,
  };
}

/**
 * ResourceQuota and LimitRange sized from the flavor: the env's launcher pods
 * (one spare for a VMI being replaced), their memory requests and CPU, a few
 * Services for the NodePort sync, the data disks as ephemeral storage, no
 * volumes (VMs boot from containerDisks).
 * The quota must be created LAST: a real API server refuses objects a quota
 * counts until the quota controller has computed its status.
 */
export function renderQuota(input: IsolationInput): { limitRange: KubeObject; quota: KubeObject } {
  const { config, namespace, labels, nodes } = input;
  const need = envResources(config, nodes);
  const largestCpuLimit = Math.max(
    parseQuantity(config.vm.controlPlane.cpuLimit),
    parseQuantity(config.vm.worker.cpuLimit),
  );
  const limitRange: KubeObject = {
    apiVersion: 'v1',
    kind: 'LimitRange',
    metadata: { name: 'limits', namespace, labels },
    spec: {
      limits: [
        {
          type: 'Container',
          // No container above one VM's CPU cap; containers that set no CPU
          // limit (the quota counts limits.cpu) get a small one.
          max: { cpu: formatCpu(largestCpuLimit) },
          default: { cpu: '100m' },
          // The quota counts requests.ephemeral-storage: containers that
          // request none (the launcher's side containers) get a little.
          defaultRequest: {
            cpu: '10m',
            memory: '16Mi',
            'ephemeral-storage': DEFAULT_EPHEMERAL_REQUEST,
          },
        },
      ],
    },
  };
  // labvirt's own SSH NodePort, plus the ports the NodePort sync may mirror (one Service each).
  const nodePorts = (config.ssh.mode === 'nodeport' ? 1 : 0) + config.sync.maxPortsPerEnv;
  const quota: KubeObject = {
    apiVersion: 'v1',
    kind: 'ResourceQuota',
    metadata: { name: 'env-quota', namespace, labels },
    spec: {
      hard: {
        pods: String(need.pods),
        'requests.cpu': formatCpu(need.cpu),
        'limits.cpu': formatCpu(need.cpu),
        'requests.memory': `${need.requestsMemoryMi}Mi`,
        'requests.ephemeral-storage': formatBytes(need.ephemeralStorageBytes),
        'count/virtualmachines.kubevirt.io': String(nodes.length),
        // The nodes' headless Service, and the NodePorts.
        services: String(1 + nodePorts),
        'services.nodeports': String(nodePorts),
        'services.loadbalancers': '0',
        persistentvolumeclaims: '0',
        secrets: String(nodes.length + 5),
      },
    },
  };
  return { limitRange, quota };
}
