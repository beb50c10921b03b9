import type { Config } from '../config/index.js';
import { renderEnvUserData, renderUserData } from './cloudinit.js';
import type { KubeObject } from './client.js';
import {
  renderNetworkPolicies,
  renderNodesService,
  renderQuota,
  renderSshNodePortService,
  type IsolationInput,
} from './isolation.js';
import {
  ANNOTATIONS,
  ENV_ID_PATTERN,
  ENV_CLOUDINIT_SECRET,
  LABELS,
  MANAGED_BY,
  envNamespace,
  nodeNames,
  roleOf,
  type NodeName,
} from './names.js';
import { envSecretsData, type EnvSecrets } from './secrets.js';
import { imageLockOf } from './templates.js';
import { renderVirtualMachine } from './vm.js';

/** Session details recorded on the Namespace when an env is made for a known owner. */
export interface EnvOwner {
  session?: string;
  student?: string;
  lab?: string;
  /** RFC 3339. */
  expiresAt?: string;
}

export interface RenderInput {
  config: Config;
  /** A flavor name configured in `config.flavors`, e.g. `v1.30-3node`. */
  flavor: string;
  /** `[a-z0-9]{8}` from `newEnvId()` (shorter ids such as `demo` are accepted for `labvirt render`). */
  envId: string;
  /** The env's CA, token and SSH identity (its key goes to `labvirt` on this env's VMs only). */
  secrets: EnvSecrets;
  owner?: EnvOwner;
  /**
   * Who labvirt runs as: bound to `config.kube.envClusterRole` inside this
   * env's Namespace (labvirt holds those rights nowhere else). Absent (e.g.
   * `labvirt render`): no RoleBinding is rendered.
   */
  operator?: RbacSubject;
}

/** An RBAC subject: labvirt's own identity on the host cluster. */
export interface RbacSubject {
  kind: 'ServiceAccount' | 'User';
  name: string;
  /** ServiceAccounts only. */
  namespace?: string;
}

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** The subject for an authenticated user name (a ServiceAccount's `system:serviceaccount:<ns>:<name>`). */
export function subjectOfUser(username: string): RbacSubject {
  const sa = SERVICE_ACCOUNT_USER.exec(username);
  return sa
    ? { kind: 'ServiceAccount', namespace: sa[1]!, name: sa[2]! }
    : { kind: 'User', name: username };
}

/** The name of the RoleBinding that gives labvirt its rights inside an env Namespace. */
export const ENV_ROLE_BINDING = 'labvirt';

/**
 * Pod Security for the env namespace. KubeVirt's virt-launcher runs non-root
 * by default (since v1.0) and adds only NET_BIND_SERVICE, which `baseline`
 * allows; nothing else runs there. An install that runs launchers as root
 * (the `Root` feature gate) or turns on KubeVirt's `PSA` feature gate gets the
 * namespace raised to `privileged` by KubeVirt itself.
 */
export const POD_SECURITY_LABELS = {
  'pod-security.kubernetes.io/enforce': 'baseline',
  'pod-security.kubernetes.io/enforce-version': 'latest',
  'pod-security.kubernetes.io/warn': 'baseline',
  'pod-security.kubernetes.io/audit': 'restricted',
} as const;

const ENV_ID_LOOSE = /^[a-z0-9]{1,20}$/;

/**
 * Every object of one env, in the order to create them: the Namespace first,
 * then the RoleBinding that lets labvirt create the rest inside it;
 * the NetworkPolicies and the LimitRange before anything runs (isolation and
 * defaults in place before the first launcher pod); the Secrets the VMs
 * reference (the control plane's first: it holds the env's PKI too); the
 * Services; the VMs; and the ResourceQuota LAST (a real API
 * server refuses what a fresh quota counts until its status is computed).
 */
export function renderEnvironment(input: RenderInput): KubeObject[] {
  const { config, envId, secrets } = input;
  const flavor = config.flavors[input.flavor];
  if (!flavor) {
    throw new Error(
      `unknown flavor ${input.flavor}; configured: ${Object.keys(config.flavors).join(', ')}`,
    );
  }
  if (!ENV_ID_PATTERN.test(envId) && !ENV_ID_LOOSE.test(envId)) {
    throw new Error(`env id "${envId}" must be lowercase letters and digits (8 from newEnvId())`);
  }
  const namespace = envNamespace(config, envId);
  const labels = {
    [LABELS.env]: envId,
    [LABELS.flavor]: input.flavor,
    [LABELS.managedBy]: MANAGED_BY,
  };
  const nodes = nodeNames(flavor.nodes);
  const imageLock = imageLockOf(config);
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

  const objects: KubeObject[] = [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: namespace,
        labels: { ...labels, [LABELS.state]: 'provisioning', ...POD_SECURITY_LABELS },
        ...(input.owner ? { annotations: ownerAnnotations(input.owner) } : {}),
      },
    },
    ...(input.operator ? [renderEnvRoleBinding(config, namespace, labels, input.operator)] : []),
  ];
  const iso: IsolationInput = { config, namespace, envId, nodes, labels };
  const { limitRange, quota } = renderQuota(iso);
  objects.push(...renderNetworkPolicies(iso), limitRange);

  const vms: KubeObject[] = [];
  const userData = new Map<NodeName, string>();
  for (const node of nodes) {
    const role = roleOf(node);
    const vmLabels = { ...labels, [LABELS.role]: role, [LABELS.node]: node };
    userData.set(
      node,
      renderUserData({ config, flavor, namespace, node, role, secrets, imageLock }),
    );
    vms.push(
      renderVirtualMachine({ config, flavor, namespace, node, role, labels: vmLabels, imageLock }),
    );
  }
  objects.push({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: ENV_CLOUDINIT_SECRET, namespace, labels },
    type: 'Opaque',
    // The env's PKI rides in it (ENV_PKI_SECRET), made before any VM: a
    // retried provisioning finds it there.
    data: { userdata: b64(renderEnvUserData(userData)), ...envSecretsData(secrets) },
  });
  objects.push(renderNodesService(iso));
  if (config.ssh.mode === 'nodeport') objects.push(renderSshNodePortService(iso));
  objects.push(...vms, quota);
  return objects;
}

function ownerAnnotations(owner: EnvOwner): Record<string, string> {
  const out: Record<string, string> = {};
  if (owner.session) out[ANNOTATIONS.session] = owner.session;
  if (owner.student) out[ANNOTATIONS.student] = owner.student;
  if (owner.lab) out[ANNOTATIONS.lab] = owner.lab;
  if (owner.expiresAt) out[ANNOTATIONS.expiresAt] = owner.expiresAt;
  return out;
}

/**
 * Binds the env role to labvirt inside one env Namespace: the only place it
 * holds those rights (the admission policy in deploy/ refuses a binding in a
 * Namespace labvirt did not make, or of another role, or to anyone else).
 */
function renderEnvRoleBinding(
  config: Config,
  namespace: string,
  labels: Record<string, string>,
  operator: RbacSubject,
): KubeObject {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: ENV_ROLE_BINDING, namespace, labels },
    roleRef: {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: config.kube.envClusterRole,
    },
    subjects: [
      operator.kind === 'ServiceAccount'
        ? { kind: 'ServiceAccount', name: operator.name, namespace: operator.namespace }
        : { kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: operator.name },
    ],
  };
}
