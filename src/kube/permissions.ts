/**
 * Every call labvirt makes to the host cluster, as RBAC sees it: the single
 * list the Helm chart's roles and deploy/rbac.yaml are written from, `labvirt
 * doctor` checks with SelfSubjectAccessReviews, and test/deploy checks both
 * ways (every call of an env's whole lifecycle is listed here, and everything
 * listed is made).
 *
 * Where each is granted (docs/security.md, "Host cluster and network"):
 * - `cluster`: the ClusterRole bound cluster-wide. Namespaces are
 *   cluster-scoped, and env Namespaces are made at run time; an admission
 *   policy (deploy/admission-policy.yaml) keeps those writes to labvirt's own.
 * - `env`: the ClusterRole `kube.envClusterRole`, which labvirt binds into
 *   each env Namespace it creates (a RoleBinding made right after the
 *   Namespace). Nothing here reaches a Namespace labvirt did not make: no
 *   Secret of any other Namespace can be read.
 * - `own`: a Role in labvirt's own Namespace (its SSH keys as Secrets).
 */
export type PermissionScope = 'cluster' | 'env' | 'own';

export interface ApiPermission {
  /** API group; `''` is the core group. */
  group: string;
  /** Plural resource name, with `/subresource` where one is called. */
  resource: string;
  verb: 'bind' | 'create' | 'delete' | 'get' | 'list' | 'patch' | 'update' | 'watch';
  scope: PermissionScope;
  /**
   * The only object the grant names (RBAC `resourceNames`). `ENV_ROLE` stands
   * for the configured `kube.envClusterRole`.
   */
  resourceName?: typeof ENV_ROLE;
  /** What labvirt does with it, for doctor's report of what is missing. */
  why: string;
}

/** Placeholder for `kube.envClusterRole` in `resourceName`. */
export const ENV_ROLE = '<kube.envClusterRole>';

const ENV_PART = 'create a part of each env';

/** Default of `kube.envClusterRole` (deploy/rbac.yaml's name for it). */
export const DEFAULT_ENV_CLUSTER_ROLE = 'labvirt-env';

export const LABVIRT_PERMISSIONS: readonly ApiPermission[] = [
  {
    group: '',
    resource: 'namespaces',
    verb: 'create',
    scope: 'cluster',
    why: "create each env's Namespace",
  },
  {
    group: '',
    resource: 'namespaces',
    verb: 'get',
    scope: 'cluster',
    why: 'wait for an env Namespace to go',
  },
  {
    group: '',
    resource: 'namespaces',
    verb: 'list',
    scope: 'cluster',
    why: 'rebuild the indexes from the cluster; readiness probe',
  },
  {
    group: '',
    resource: 'namespaces',
    verb: 'patch',
    scope: 'cluster',
    why: "record an env's state and owner",
  },
  { group: '', resource: 'namespaces', verb: 'delete', scope: 'cluster', why: 'tear an env down' },
  {
    group: '',
    resource: 'namespaces',
    verb: 'watch',
    scope: 'cluster',
    why: 'follow env Namespaces coming and going (NodePort sync)',
  },
  {
    group: 'rbac.authorization.k8s.io',
    resource: 'rolebindings',
    verb: 'create',
    scope: 'cluster',
    why: "bind the env role into each env's Namespace, right after creating it",
  },
  {
    group: 'rbac.authorization.k8s.io',
    resource: 'clusterroles',
    verb: 'bind',
    scope: 'cluster',
    resourceName: ENV_ROLE,
    why: 'bind the env role (and no other) without holding its rights cluster-wide',
  },
  {
    group: '',
    resource: 'secrets',
    verb: 'create',
    scope: 'env',
    why: "each env's cloud-init and PKI",
  },
  { group: '', resource: 'secrets', verb: 'get', scope: 'env', why: "read an env's PKI back" },
  {
    group: '',
    resource: 'secrets',
    verb: 'create',
    scope: 'own',
    why: "labvirt's own SSH keys (secret:<its namespace>/<name>), made on first start",
  },
  {
    group: '',
    resource: 'secrets',
    verb: 'get',
    scope: 'own',
    why: "labvirt's own SSH keys (secret:<its namespace>/<name>)",
  },
  {
    group: '',
    resource: 'events',
    verb: 'create',
    scope: 'env',
    why: "record an env's state changes and failures on its Namespace",
  },
  { group: '', resource: 'services', verb: 'create', scope: 'env', why: ENV_PART },
  {
    group: '',
    resource: 'services',
    verb: 'list',
    scope: 'env',
    why: "find an env's mirrored NodePorts by label (NodePort sync)",
  },
  {
    group: '',
    resource: 'services',
    verb: 'update',
    scope: 'env',
    why: "follow a student Service's changed node port (NodePort sync)",
  },
  {
    group: '',
    resource: 'services',
    verb: 'delete',
    scope: 'env',
    why: 'remove a mirrored NodePort when the student removes theirs (NodePort sync)',
  },
  {
    group: 'networking.k8s.io',
    resource: 'networkpolicies',
    verb: 'get',
    scope: 'env',
    why: 'read the policy that opens the mirrored ports (NodePort sync)',
  },
  {
    group: 'networking.k8s.io',
    resource: 'networkpolicies',
    verb: 'update',
    scope: 'env',
    why: 'open exactly the mirrored ports (NodePort sync)',
  },
  {
    group: 'networking.k8s.io',
    resource: 'networkpolicies',
    verb: 'delete',
    scope: 'env',
    why: 'close the mirrored ports when the last mirror goes (NodePort sync)',
  },
  {
    group: '',
    resource: 'nodes',
    verb: 'list',
    scope: 'cluster',
    why: "the host nodes' addresses, shown for mirrored ports unless sync.publicHost is set",
  },
  { group: '', resource: 'resourcequotas', verb: 'create', scope: 'env', why: ENV_PART },
  { group: '', resource: 'limitranges', verb: 'create', scope: 'env', why: ENV_PART },
  {
    group: 'networking.k8s.io',
    resource: 'networkpolicies',
    verb: 'create',
    scope: 'env',
    why: ENV_PART,
  },
  {
    group: 'kubevirt.io',
    resource: 'virtualmachines',
    verb: 'create',
    scope: 'env',
    why: "create an env's VMs",
  },
  {
    group: 'kubevirt.io',
    resource: 'virtualmachineinstances',
    verb: 'list',
    // One shared list-and-watch for all envs' VMs (src/kube/watch.ts) spans
    // every namespace; VMIs hold no secrets.
    scope: 'cluster',
    why: "watch an env's VMs boot (phase, IP, readiness)",
  },
  {
    group: 'kubevirt.io',
    resource: 'virtualmachineinstances',
    verb: 'watch',
    scope: 'cluster',
    why: "follow every env's VMs booting (one shared watch)",
  },
  {
    group: '',
    resource: 'pods',
    verb: 'list',
    // In env Namespaces only: a node's address is its virt-launcher pod's IP,
    // which the guest cannot change (the VMI's reported interfaces it can).
    scope: 'env',
    why: "each node's address, from its virt-launcher pod",
  },
  {
    group: 'kubevirt.io',
    resource: 'virtualmachineinstances',
    verb: 'delete',
    scope: 'env',
    why: 'reboot a VM that failed to start',
  },
];

/**
 * What `labvirt doctor` reads besides (the chart grants it with
 * `rbac.doctor`): free capacity on the nodes and KubeVirt's configuration.
 * Its SelfSubjectAccessReviews need no grant (every authenticated user may).
 */
export const DOCTOR_PERMISSIONS: readonly ApiPermission[] = [
  {
    group: '',
    resource: 'nodes',
    verb: 'list',
    scope: 'cluster',
    why: 'free CPU and memory of schedulable nodes',
  },
  {
    group: '',
    resource: 'pods',
    verb: 'list',
    scope: 'cluster',
    why: 'what already runs on the nodes',
  },
  {
    group: 'kubevirt.io',
    resource: 'kubevirts',
    verb: 'list',
    scope: 'cluster',
    why: "KubeVirt's configuration (network bindings, emulation)",
  },
];

/**
 * What `labvirt doctor --check-images` adds, in the namespace its probe pods
 * run in (the chart: labvirt's own namespace): a short-lived pod per image.
 */
export const DOCTOR_IMAGE_PERMISSIONS: readonly ApiPermission[] = [
  {
    group: '',
    resource: 'pods',
    verb: 'create',
    scope: 'own',
    why: 'a probe pod that pulls a flavor image',
  },
  {
    group: '',
    resource: 'pods',
    verb: 'get',
    scope: 'own',
    why: "the probe pod's image pull status",
  },
  { group: '', resource: 'pods', verb: 'delete', scope: 'own', why: 'remove the probe pod' },
];

/** The resource each kind labvirt handles is served as (for `HostCluster.onRequest` kinds). */
export const KIND_RESOURCES: Readonly<Record<string, { group: string; resource: string }>> = {
  Namespace: { group: '', resource: 'namespaces' },
  RoleBinding: { group: 'rbac.authorization.k8s.io', resource: 'rolebindings' },
  Secret: { group: '', resource: 'secrets' },
  Service: { group: '', resource: 'services' },
  ConfigMap: { group: '', resource: 'configmaps' },
  Event: { group: '', resource: 'events' },
  ResourceQuota: { group: '', resource: 'resourcequotas' },
  LimitRange: { group: '', resource: 'limitranges' },
  Node: { group: '', resource: 'nodes' },
  Pod: { group: '', resource: 'pods' },
  NetworkPolicy: { group: 'networking.k8s.io', resource: 'networkpolicies' },
  VirtualMachine: { group: 'kubevirt.io', resource: 'virtualmachines' },
  VirtualMachineInstance: { group: 'kubevirt.io', resource: 'virtualmachineinstances' },
  KubeVirt: { group: 'kubevirt.io', resource: 'kubevirts' },
};

/** The permissions granted in `scope`, in the form of RBAC rules, one per resource and name. */
export function rulesOf(
  permissions: readonly ApiPermission[],
  scope: PermissionScope,
  envClusterRole: string = DEFAULT_ENV_CLUSTER_ROLE,
): { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] {
  const byTarget = new Map<
    string,
    { group: string; resource: string; name?: string; verbs: Set<string> }
  >();
  for (const p of permissions.filter((x) => x.scope === scope)) {
    const name = p.resourceName === ENV_ROLE ? envClusterRole : undefined;
    const key = `${p.group}|${p.resource}|${name ?? ''}`;
    const entry = byTarget.get(key) ?? {
      group: p.group,
      resource: p.resource,
      name,
      verbs: new Set(),
    };
    entry.verbs.add(p.verb);
    byTarget.set(key, entry);
  }
  return [...byTarget.values()].map((t) => ({
    apiGroups: [t.group],
    resources: [t.resource],
    verbs: [...t.verbs].sort(),
    ...(t.name ? { resourceNames: [t.name] } : {}),
  }));
}

/** `verb group/resource`, the form permissions are compared in. */
export function permissionKey(p: Pick<ApiPermission, 'group' | 'resource' | 'verb'>): string {
  return `${p.verb} ${p.group || 'core'}/${p.resource}`;
}
