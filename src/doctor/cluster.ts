import type { V1Pod } from '@kubernetes/client-node';
import type { Config } from '../config/index.js';
import {
  DEFAULT_ENV_CLUSTER_ROLE,
  ENV_ROLE,
  LABVIRT_PERMISSIONS,
  apiErrorMessage,
  envResources,
  nodeNames,
  parseQuantity,
  type ClusterInspector,
  type ServerVersion,
} from '../kube/index.js';
import { fail, pass, warn, type CheckResult } from './types.js';

/** Kubernetes minors labvirt is tested against as a host cluster. */
const OLDEST_MINOR = 27;

export async function checkApi(
  inspector: ClusterInspector,
): Promise<{ result: CheckResult; version?: ServerVersion }> {
  const title = 'Kubernetes API reachable';
  try {
    const version = await inspector.version();
    const minor = Number(version.minor);
    if (Number.isFinite(minor) && minor < OLDEST_MINOR) {
      return {
        version,
        result: warn(
          'api',
          title,
          `${inspector.server()} answers, version ${version.gitVersion}`,
          `upgrade the host cluster to Kubernetes 1.${OLDEST_MINOR} or newer`,
        ),
      };
    }
    return {
      version,
      result: pass('api', title, `${inspector.server()} answers, version ${version.gitVersion}`),
    };
  } catch (err) {
    return {
      result: fail(
        'api',
        title,
        `${inspector.server()}: ${(err as Error).message}`,
        'check kube.kubeconfig / kube.context (or $LABVIRT_KUBECONFIG), the network path to the API server and its certificate',
      ),
    };
  }
}

const CLOCK_WARN_MS = 2_000;
const CLOCK_FAIL_MS = 30_000;

/** Certificates labvirt issues and session expiry assume clocks agree. */
export function checkClock(version: ServerVersion | undefined): CheckResult {
  const title = 'Clock skew with the API server';
  if (!version?.serverDate) {
    return warn(
      'clock',
      title,
      'the API server sent no Date header',
      'compare `date -u` here and on a control-plane node; run chrony or systemd-timesyncd on both',
    );
  }
  // The Date header has a resolution of one second.
  const skew = Math.abs(version.serverDate.getTime() - version.localDate.getTime());
  const detail = `${(skew / 1000).toFixed(1)} s apart`;
  const fix = 'synchronise clocks with NTP (chrony or systemd-timesyncd) here and on the nodes';
  if (skew >= CLOCK_FAIL_MS) return fail('clock', title, detail, fix);
  if (skew >= CLOCK_WARN_MS) return warn('clock', title, detail, fix);
  return pass('clock', title, `within ${CLOCK_WARN_MS / 1000} s`);
}

const KUBEVIRT_INSTALL_FIX =
  'install KubeVirt (virt-operator and a KubeVirt resource): https://kubevirt.io/user-guide/cluster_admin/installation/';

/** KubeVirt's API, its install resource, the network binding labvirt uses, and emulation. */
export async function checkKubevirt(
  inspector: ClusterInspector,
  kubevirtNamespace: string,
): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  let served: string[];
  try {
    served = await inspector.servedResources('kubevirt.io', 'v1');
  } catch (err) {
    return [
      fail(
        'kubevirt.api',
        "KubeVirt's API (CRDs) served",
        `discovery of kubevirt.io/v1 failed: ${apiErrorMessage(err)}`,
        KUBEVIRT_INSTALL_FIX,
      ),
    ];
  }
  const missing = ['virtualmachines', 'virtualmachineinstances'].filter((r) => !served.includes(r));
  if (missing.length > 0) {
    return [
      fail(
        'kubevirt.api',
        "KubeVirt's API (CRDs) served",
        `kubevirt.io/v1 does not serve ${missing.join(', ')}`,
        KUBEVIRT_INSTALL_FIX,
      ),
    ];
  }
  out.push(
    pass(
      'kubevirt.api',
      "KubeVirt's API (CRDs) served",
      'kubevirt.io/v1 serves virtualmachines and virtualmachineinstances',
    ),
  );

  let installs;
  try {
    installs = await inspector.kubevirtInstalls(kubevirtNamespace);
  } catch (err) {
    out.push(
      warn(
        'kubevirt.install',
        'KubeVirt installed and deployed',
        `cannot read KubeVirt resources in ${kubevirtNamespace}: ${apiErrorMessage(err)}`,
        `let labvirt list kubevirts.kubevirt.io in ${kubevirtNamespace} (Helm: rbac.doctor=true, kubevirt.namespace), or pass --kubevirt-namespace`,
      ),
    );
    return out;
  }
  const kv = installs[0];
  if (!kv) {
    out.push(
      fail(
        'kubevirt.install',
        'KubeVirt installed and deployed',
        `no KubeVirt resource in namespace ${kubevirtNamespace}`,
        `${KUBEVIRT_INSTALL_FIX} (or pass --kubevirt-namespace where it is)`,
      ),
    );
    return out;
  }
  const version = kv.observedVersion ?? 'unknown version';
  out.push(
    kv.phase === 'Deployed'
      ? pass('kubevirt.install', 'KubeVirt installed and deployed', `${version}, Deployed`)
      : fail(
          'kubevirt.install',
          'KubeVirt installed and deployed',
          `${version}, phase ${kv.phase ?? 'unknown'}`,
          `kubectl -n ${kv.namespace} get kubevirt ${kv.name} -o yaml; kubectl -n ${kv.namespace} get pods (virt-operator logs say why)`,
        ),
  );
  // KubeVirt's default is to permit it; only an explicit false forbids it.
  out.push(
    kv.permitBridgeOnPodNetwork === false
      ? fail(
          'kubevirt.bridge',
          'Bridge binding on the pod network permitted',
          "spec.configuration.network.permitBridgeInterfaceOnPodNetwork is false: labvirt's VMs use bridge binding and would be refused",
          `kubectl -n ${kv.namespace} patch kubevirt ${kv.name} --type merge -p '{"spec":{"configuration":{"network":{"permitBridgeInterfaceOnPodNetwork":true}}}}'`,
        )
      : pass(
          'kubevirt.bridge',
          'Bridge binding on the pod network permitted',
          'permitBridgeInterfaceOnPodNetwork is not false',
        ),
  );
  out.push(
    kv.useEmulation
      ? warn(
          'kubevirt.emulation',
          'Hardware virtualisation',
          'useEmulation is on: VMs run in software emulation (several times slower to boot and run)',
          'use nodes with /dev/kvm (bare metal or nested virtualisation) and turn developerConfiguration.useEmulation off',
        )
      : pass('kubevirt.emulation', 'Hardware virtualisation', 'useEmulation is off (KVM)'),
  );
  return out;
}

/**
 * SelfSubjectAccessReview for every cluster-wide grant labvirt needs, binding
 * its env role included. What it does inside an env Namespace comes from that
 * role, bound there at creation: no Namespace holds it before.
 */
export async function checkPermissions(
  inspector: ClusterInspector,
  envClusterRole: string = DEFAULT_ENV_CLUSTER_ROLE,
): Promise<CheckResult> {
  const title = 'Permissions for every call labvirt makes';
  const missing: string[] = [];
  const clusterWide = LABVIRT_PERMISSIONS.filter((p) => p.scope === 'cluster');
  try {
    for (const p of clusterWide) {
      const name = p.resourceName === ENV_ROLE ? envClusterRole : undefined;
      const { allowed } = await inspector.mayI(p, undefined, name);
      if (!allowed)
        missing.push(
          `${p.verb} ${p.group ? `${p.resource}.${p.group}` : p.resource}${name ? ` ${name}` : ''} (${p.why})`,
        );
    }
  } catch (err) {
    return warn(
      'permissions',
      title,
      `SelfSubjectAccessReview failed: ${apiErrorMessage(err)}`,
      'check that the authorization.k8s.io/v1 API is served; every authenticated identity may create SelfSubjectAccessReviews',
    );
  }
  if (missing.length > 0) {
    return fail(
      'permissions',
      title,
      `missing (cluster-wide): ${missing.join('; ')}`,
      "install the Helm chart's ClusterRole (rbac.create=true) and bind it to this identity, or grant the verbs listed",
    );
  }
  return pass(
    'permissions',
    title,
    `all ${clusterWide.length} allowed cluster-wide; inside env Namespaces labvirt binds ${envClusterRole}`,
  );
}

interface NodeRoom {
  name: string;
  cpu: number;
  memory: number;
}

/** Pods of known CNIs that enforce NetworkPolicy, by name prefix. */
const POLICY_CNIS: Record<string, string> = {
  'calico-node': 'Calico',
  cilium: 'Cilium',
  'antrea-agent': 'Antrea',
  'weave-net': 'Weave Net',
  'kube-router': 'kube-router',
  canal: 'Canal',
};
const NON_POLICY_CNIS: Record<string, string> = { 'kube-flannel': 'flannel' };

/** Env isolation rests on NetworkPolicies: the host's CNI must enforce them. */
export function checkNetworkPolicyCni(pods: V1Pod[]): CheckResult {
  const title = 'A CNI that enforces NetworkPolicy';
  const names = pods.map((p) => p.metadata?.name ?? '');
  const found = (table: Record<string, string>) => [
    ...new Set(
      Object.entries(table)
        .filter(([prefix]) => names.some((n) => n.startsWith(prefix)))
        .map(([, cni]) => cni),
    ),
  ];
  const enforcing = found(POLICY_CNIS);
  if (enforcing.length > 0) return pass('cni', title, `${enforcing.join(', ')} found`);
  const plain = found(NON_POLICY_CNIS);
  if (plain.length > 0) {
    return fail(
      'cni',
      title,
      `${plain.join(', ')} found, which does not enforce NetworkPolicy: envs would not be isolated`,
      'install a CNI that enforces NetworkPolicy (Calico, Cilium, Antrea; or Canal over flannel)',
    );
  }
  return warn(
    'cni',
    title,
    'no known CNI pods found',
    "find the CNI's pods (kubectl get pods -A | grep -Ei 'calico|cilium|antrea|flannel|weave'); test isolation by applying a deny-all NetworkPolicy to a test pod and checking it is unreachable",
  );
}

/** Free CPU and memory on schedulable nodes, against the pool's warm targets. */
export function checkCapacity(
  config: Config,
  nodes: Awaited<ReturnType<ClusterInspector['nodes']>>,
  pods: V1Pod[],
): CheckResult {
  const title = 'Room for the warm pool';
  const schedulable = nodes.filter(
    (n) =>
      !n.spec?.unschedulable &&
      n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
      n.metadata?.labels?.['kubevirt.io/schedulable'] !== 'false',
  );
  const rooms = new Map<string, NodeRoom>(
    schedulable.map((n) => [
      n.metadata?.name ?? '',
      {
        name: n.metadata?.name ?? '',
        cpu: parseQuantity(n.status?.allocatable?.cpu ?? '0'),
        memory: parseQuantity(n.status?.allocatable?.memory ?? '0'),
      },
    ]),
  );
  for (const pod of pods) {
    const room = rooms.get(pod.spec?.nodeName ?? '');
    if (!room) continue;
    for (const c of pod.spec?.containers ?? []) {
      room.cpu -= parseQuantity(c.resources?.requests?.cpu ?? '0');
      room.memory -= parseQuantity(c.resources?.requests?.memory ?? '0');
    }
  }
  // The warm target per flavor: its own minWarm or a schedule's, whichever is larger.
  const flavors = Object.entries(config.flavors).map(([name, f]) => ({
    name,
    vms: nodeNames(f.nodes).map((node) => envResources(config, [node])),
    minWarm: Math.min(
      f.maxTotal,
      Math.max(
        f.minWarm,
        ...config.schedules.filter((s) => s.flavor === name).map((s) => s.minWarm),
      ),
    ),
    maxTotal: f.maxTotal,
  }));
  const wanted = flavors.reduce((n, f) => n + f.minWarm, 0);
  const ceiling = flavors.reduce((n, f) => n + f.maxTotal, 0);
  // Place whole envs, flavor by flavor in turn, each VM on the node with the most memory left.
  const free = [...rooms.values()];
  const placed = new Map(flavors.map((f) => [f.name, 0]));
  let fits = 0;
  for (let progress = true; progress && fits < ceiling;) {
    progress = false;
    for (const f of flavors) {
      if ((placed.get(f.name) ?? 0) >= f.maxTotal) continue;
      const trial = free.map((r) => ({ ...r }));
      const ok = f.vms.every((vm) => {
        const memory = vm.requestsMemoryMi * 2 ** 20;
        const node = trial
          .filter((r) => r.cpu >= vm.cpu && r.memory >= memory)
          .sort((a, b) => b.memory - a.memory)[0];
        if (!node) return false;
        node.cpu -= vm.cpu;
        node.memory -= memory;
        return true;
      });
      if (!ok) continue;
      trial.forEach((r, i) => Object.assign(free[i]!, r));
      placed.set(f.name, (placed.get(f.name) ?? 0) + 1);
      fits += 1;
      progress = true;
    }
  }
  const mix = [...placed].map(([name, n]) => `${n} × ${name}`).join(', ');
  const detail = `${schedulable.length} schedulable node(s); room for ${fits} env(s) now (${mix}); warm target ${wanted}, maxTotal ${ceiling}`;
  if (schedulable.length === 0) {
    return fail(
      'capacity',
      title,
      'no schedulable node (Ready, not cordoned, kubevirt.io/schedulable not false)',
      'check `kubectl get nodes -L kubevirt.io/schedulable` and virt-handler on each node',
    );
  }
  if (fits < wanted) {
    return fail(
      'capacity',
      title,
      detail,
      'add nodes (or larger ones), or lower flavors.*.minWarm, schedules[].minWarm or vm.controlPlane/vm.worker sizes',
    );
  }
  if (fits < ceiling) {
    return warn(
      'capacity',
      title,
      detail,
      'the pool will stop growing before maxTotal: add nodes, or lower flavors.*.maxTotal to what fits',
    );
  }
  return pass('capacity', title, detail);
}
