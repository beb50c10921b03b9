import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import type { Config } from '../config/index.js';
import { caCertHash, generateBootstrapToken, generateCa, type KeyPairPem } from '../pki/index.js';
import type { HostCluster, KubeObject } from './client.js';

export const LABELS = {
  env: 'labvirt.io/env',
  flavor: 'labvirt.io/flavor',
  state: 'labvirt.io/state',
  role: 'labvirt.io/role',
  node: 'labvirt.io/node',
  managedBy: 'app.kubernetes.io/managed-by',
} as const;

export const ANNOTATIONS = {
  session: 'labvirt.io/session',
  student: 'labvirt.io/student',
  lab: 'labvirt.io/lab',
  expiresAt: 'labvirt.io/expires-at',
  claimedAt: 'labvirt.io/claimed-at',
  readyAt: 'labvirt.io/ready-at',
  createdAt: 'labvirt.io/session-created-at',
  studentKey: 'labvirt.io/student-key',
  hintsUsed: 'labvirt.io/hints-used',
  attempt: 'labvirt.io/attempt',
} as const;

export function envNamespace(config: Config, envId: string): string {
  return `${config.namespacePrefix}${envId}`;
}

export function newEnvId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(randomBytes(8), (b) => alphabet[b % alphabet.length]).join('');
}

export interface EnvSecrets {
  ca: KeyPairPem;
  bootstrapToken: string;
  caHash: string;
}

export async function generateEnvSecrets(): Promise<EnvSecrets> {
  const ca = await generateCa({ commonName: 'kubernetes' });
  return { ca, bootstrapToken: generateBootstrapToken(), caHash: caCertHash(ca.certPem) };
}

const ENV_SECRET = 'cluster-pki';

export async function readEnvSecrets(
  cluster: HostCluster,
  namespace: string,
): Promise<EnvSecrets | undefined> {
  const s = await cluster.readSecret(namespace, ENV_SECRET);
  const d = s?.data;
  if (!d?.['ca.crt'] || !d['ca.key'] || !d['token']) return undefined;
  const dec = (v: string) => Buffer.from(v, 'base64').toString('utf8');
  const ca = { certPem: dec(d['ca.crt']), keyPem: dec(d['ca.key']) };
  return { ca, bootstrapToken: dec(d['token']), caHash: caCertHash(ca.certPem) };
}

export interface RenderInput {
  config: Config;
  flavor: string;
  envId: string;
  orchestratorPublicKey: string;
  secrets: EnvSecrets;
}

export function renderEnvironment(input: RenderInput): KubeObject[] {
  const { config, flavor, envId } = input;
  const f = config.flavors[flavor]!;
  const ns = envNamespace(config, envId);
  const base = { [LABELS.env]: envId, [LABELS.flavor]: flavor, [LABELS.managedBy]: 'labvirt' };
  const nodes = f.nodes === 3 ? ['control-plane', 'worker-1', 'worker-2'] : ['control-plane'];
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const objs: KubeObject[] = [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: ns,
        labels: {
          ...base,
          [LABELS.state]: 'provisioning',
          'pod-security.kubernetes.io/enforce': 'privileged',
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: ENV_SECRET, namespace: ns, labels: base },
      type: 'Opaque',
      data: {
        'ca.crt': b64(input.secrets.ca.certPem),
        'ca.key': b64(input.secrets.ca.keyPem),
        token: b64(input.secrets.bootstrapToken),
      },
    },
  ];
  for (const node of nodes) {
    const role = node === 'control-plane' ? 'control-plane' : 'worker';
    const res = role === 'control-plane' ? config.vm.controlPlane : config.vm.worker;
    const labels = { ...base, [LABELS.role]: role, [LABELS.node]: node };
    const userdata =
      '#cloud-config\n' +
      stringify({
        hostname: node,
        users: [
          {
            name: 'labvirt',
            sudo: 'ALL=(ALL) NOPASSWD:ALL',
            shell: '/bin/bash',
            ssh_authorized_keys: [input.orchestratorPublicKey],
          },
          { name: 'student', sudo: 'ALL=(ALL) NOPASSWD:ALL', shell: '/bin/bash' },
        ],
        write_files: [
          {
            path: '/etc/labvirt/join',
            content: `${input.secrets.bootstrapToken} ${input.secrets.caHash}\n`,
          },
        ],
      });
    objs.push({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: `${node}-cloudinit`, namespace: ns, labels },
      type: 'Opaque',
      data: { userdata: b64(userdata) },
    });
    objs.push({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: node, namespace: ns, labels },
      spec: {
        runStrategy: 'Always',
        template: {
          metadata: { labels },
          spec: {
            hostname: node,
            domain: {
              cpu: { cores: res.cpus },
              memory: { guest: res.memory },
              resources: { limits: { cpu: res.cpuLimit } },
              devices: {
                autoattachGraphicsDevice: false,
                disks: [
                  { name: 'root', disk: { bus: 'virtio' } },
                  { name: 'cloudinit', disk: { bus: 'virtio' } },
                ],
                interfaces: [{ name: 'default', bridge: {} }],
              },
            },
            networks: [{ name: 'default', pod: {} }],
            volumes: [
              { name: 'root', containerDisk: { image: f.image ?? config.vm.image } },
              { name: 'cloudinit', cloudInitNoCloud: { secretRef: { name: `${node}-cloudinit` } } },
            ],
          },
        },
      },
    });
  }
  objs.push(...renderIsolation(config, ns, envId, base, nodes.length));
  return objs;
}

/** Memory a VMI's launcher pod requests: guest RAM + KubeVirt's overhead. */
function launcherMemoryMi(guest: string, cpus: number): number {
  const m = /^(\d+(?:\.\d+)?)(Mi|Gi)$/.exec(guest);
  const mi = m ? Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1) : 1024;
  return Math.ceil(mi + 220 + mi / 512 + 8 * cpus);
}

/**
 * What keeps an env to itself: default-deny NetworkPolicies with the few
 * allowances it needs, the SSH NodePort in NodePort mode, a LimitRange, and
 * a ResourceQuota sized for exactly its VMs. The quota comes last: a real API
 * server refuses objects a quota counts until the quota's status exists.
 */
function renderIsolation(
  config: Config,
  ns: string,
  envId: string,
  base: Record<string, string>,
  nodeCount: number,
): KubeObject[] {
  const envPods = { matchLabels: { [LABELS.env]: envId } };
  const meta = (name: string) => ({ name, namespace: ns, labels: base });
  const policies: KubeObject[] = [
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('default-deny'),
      spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('allow-within-env'),
      spec: {
        podSelector: envPods,
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ podSelector: envPods }] }],
        egress: [{ to: [{ podSelector: envPods }] }],
      },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('allow-dns-and-internet'),
      spec: {
        podSelector: envPods,
        policyTypes: ['Egress'],
        egress: [
          {
            to: [
              {
                namespaceSelector: {
                  matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' },
                },
                podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
              },
            ],
            ports: [
              { protocol: 'UDP', port: 53 },
              { protocol: 'TCP', port: 53 },
            ],
          },
          { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: config.network.deniedEgressCidrs } }] },
        ],
      },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta('allow-ssh'),
      spec:
        config.ssh.mode === 'nodeport'
          ? {
              podSelector: { matchLabels: { [LABELS.env]: envId, [LABELS.node]: 'control-plane' } },
              policyTypes: ['Ingress'],
              ingress: [{ ports: [{ protocol: 'TCP', port: 22 }] }],
            }
          : {
              podSelector: envPods,
              policyTypes: ['Ingress'],
              ingress: [
                {
                  from: [
                    {
                      namespaceSelector: {
                        matchLabels: {
                          'kubernetes.io/metadata.name': config.network.gatewayNamespace,
                        },
                      },
                      podSelector: { matchLabels: config.network.gatewayPodLabels },
                    },
                    ...(config.network.allowVirtctlSsh
                      ? [
                          {
                            namespaceSelector: {},
                            podSelector: { matchLabels: { 'kubevirt.io': 'virt-api' } },
                          },
                        ]
                      : []),
                  ],
                  ports: [{ protocol: 'TCP', port: 22 }],
                },
              ],
            },
    },
  ];
  const extra: KubeObject[] = [];
  if (config.ssh.mode === 'nodeport') {
    extra.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('ssh'),
      spec: {
        type: 'NodePort',
        selector: { [LABELS.env]: envId, [LABELS.node]: 'control-plane' },
        ports: [{ name: 'ssh', protocol: 'TCP', port: 22, targetPort: 22 }],
      },
    });
  }
  const cp = config.vm.controlPlane;
  const w = config.vm.worker;
  const memMi =
    launcherMemoryMi(cp.memory, cp.cpus) + (nodeCount - 1) * launcherMemoryMi(w.memory, w.cpus);
  const cpuLimit = Number.parseFloat(cp.cpuLimit) + (nodeCount - 1) * Number.parseFloat(w.cpuLimit);
  extra.push({
    apiVersion: 'v1',
    kind: 'LimitRange',
    metadata: meta('limits'),
    spec: {
      limits: [
        {
          type: 'Container',
          defaultRequest: { cpu: '100m', memory: '64Mi' },
          default: { cpu: '1', memory: '2Gi' },
        },
      ],
    },
  });
  extra.push({
    apiVersion: 'v1',
    kind: 'ResourceQuota',
    metadata: meta('env-quota'),
    spec: {
      hard: {
        pods: String(nodeCount + 2),
        'requests.memory': `${memMi + 256}Mi`,
        'limits.cpu': String(cpuLimit + 1),
        services: '4',
        secrets: '12',
      },
    },
  });
  return [...policies, ...extra];
}

export {
  HostCluster,
  loadKubeConfig,
  isApiError,
  apiErrorMessage,
  type KubeObject,
  type VmiStatusView,
} from './client.js';
