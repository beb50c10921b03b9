/**
 * Every call labvirt makes to the host cluster, as RBAC sees it: the single
 * list the Helm chart's ClusterRole is written from, `labvirt doctor` checks
 * with SelfSubjectAccessReviews, and test/deploy checks both ways (every call
 * of an env's whole lifecycle is listed here, and everything listed is made).
 */
export interface ApiPermission {
  /** API group; `''` is the core group. */
  group: string;
  /** Plural resource name, with `/subresource` where one is called. */
  resource: string;
  verb: 'create' | 'delete' | 'get' | 'list' | 'patch' | 'update' | 'watch';
  /** What labvirt does with it, for doctor's report of what is missing. */
  why: string;
}

const ENV_PART = 'create a part of each env';

export const LABVIRT_PERMISSIONS: readonly ApiPermission[] = [
  { group: '', resource: 'namespaces', verb: 'create', why: "create each env's Namespace" },
  { group: '', resource: 'namespaces', verb: 'get', why: 'wait for an env Namespace to go' },
  {
    group: '',
    resource: 'namespaces',
    verb: 'list',
    why: 'rebuild the indexes from the cluster; readiness probe',
  },
  {
    group: '',
    resource: 'namespaces',
    verb: 'watch',
    why: 'wait for env Namespaces to go (one shared watch)',
  },
  { group: '', resource: 'namespaces', verb: 'patch', why: "record an env's state and owner" },
  { group: '', resource: 'namespaces', verb: 'delete', why: 'tear an env down' },
  {
    group: '',
    resource: 'secrets',
    verb: 'create',
    why: "each env's cloud-init and PKI; labvirt's own SSH keys",
  },
  {
    group: '',
    resource: 'secrets',
    verb: 'get',
    why: "read an env's PKI back; labvirt's own SSH keys",
  },
  {
    group: '',
    resource: 'events',
    verb: 'create',
    why: "record an env's state changes and failures on its Namespace",
  },
  { group: '', resource: 'services', verb: 'create', why: ENV_PART },
  {
    group: '',
    resource: 'services',
    verb: 'list',
    why: "find an env's mirrored NodePorts by label (NodePort sync)",
  },
  {
    group: '',
    resource: 'services',
    verb: 'update',
    why: "follow a student Service's changed node port (NodePort sync)",
  },
  {
    group: '',
    resource: 'services',
    verb: 'delete',
    why: 'remove a mirrored NodePort when the student removes theirs (NodePort sync)',
  },
  {
    group: 'networking.k8s.io',
    resource: 'networkpolicies',
    verb: 'get',
    why: 'read the policy that opens the mirrored ports (NodePort sync)',
  },
  {
    group: 'networking.k8s.io',
    resource: 'networkpolicies',
    verb: 'update',
    why: 'open exactly the mirrored ports (NodePort sync)',
  },
  {
    group: 'networking.k8s.io',
    resource: 'networkpolicies',
    verb: 'delete',
    why: 'close the mirrored ports when the last mirror goes (NodePort sync)',
  },
  {
    group: '',
    resource: 'nodes',
    verb: 'list',
    why: "the host nodes' addresses, shown for mirrored ports unless sync.publicHost is set",
  },
  { group: '', resource: 'resourcequotas', verb: 'create', why: ENV_PART },
  { group: '', resource: 'limitranges', verb: 'create', why: ENV_PART },
  { group: 'networking.k8s.io', resource: 'networkpolicies', verb: 'create', why: ENV_PART },
  { group: 'kubevirt.io', resource: 'virtualmachines', verb: 'create', why: "create an env's VMs" },
  {
    group: 'kubevirt.io',
    resource: 'virtualmachineinstances',
    verb: 'list',
    why: "watch an env's VMs boot (phase, IP, readiness)",
  },
  {
    group: 'kubevirt.io',
    resource: 'virtualmachineinstances',
    verb: 'watch',
    why: "follow every env's VMs booting (one shared watch)",
  },
  {
    group: 'kubevirt.io',
    resource: 'virtualmachineinstances',
    verb: 'delete',
    why: 'reboot a VM that failed to start',
  },
];

/**
 * What `labvirt doctor` reads besides (the chart grants it with
 * `rbac.doctor`): free capacity on the nodes and KubeVirt's configuration.
 * Its SelfSubjectAccessReviews need no grant (every authenticated user may).
 */
export const DOCTOR_PERMISSIONS: readonly ApiPermission[] = [
  { group: '', resource: 'nodes', verb: 'list', why: 'free CPU and memory of schedulable nodes' },
  { group: '', resource: 'pods', verb: 'list', why: 'what already runs on the nodes' },
  {
    group: 'kubevirt.io',
    resource: 'kubevirts',
    verb: 'list',
    why: "KubeVirt's configuration (network bindings, emulation)",
  },
];

/** The resource each kind labvirt handles is served as (for `HostCluster.onRequest` kinds). */
export const KIND_RESOURCES: Readonly<Record<string, { group: string; resource: string }>> = {
  Namespace: { group: '', resource: 'namespaces' },
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

/** `verb group/resource`, the form permissions are compared in. */
export function permissionKey(p: Pick<ApiPermission, 'group' | 'resource' | 'verb'>): string {
  return `${p.verb} ${p.group || 'core'}/${p.resource}`;
}
