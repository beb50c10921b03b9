import { createHash } from 'node:crypto';
import { timestamp, type ObjectStore, type Obj } from './store.js';

export interface NodeShape {
  name: string;
  /** Cores. */
  cpu: number;
  /** Bytes. */
  memory: number;
  ready: boolean;
  internalIp?: string;
  labels?: Record<string, string>;
  taints?: { key: string; effect: string }[];
  kubeletVersion?: string;
}

/** A Node object as a kubelet registers it: capacity, addresses, the Ready condition. */
export function nodeObject(n: NodeShape): Obj {
  const capacity = {
    cpu: String(n.cpu),
    memory: `${Math.floor(n.memory / 1024)}Ki`,
    pods: '110',
  };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      labels: {
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        ...n.labels,
      },
    },
    spec: n.taints ? { taints: n.taints } : {},
    status: nodeStatus(n, capacity),
  };
}

function nodeStatus(n: NodeShape, capacity: Record<string, string>): Record<string, unknown> {
  return {
    capacity,
    allocatable: capacity,
    addresses: [
      ...(n.internalIp ? [{ type: 'InternalIP', address: n.internalIp }] : []),
      { type: 'Hostname', address: n.name },
    ],
    conditions: [readyCondition(n.ready)],
    nodeInfo: {
      machineID: idOf(n.name, 'machine'),
      systemUUID: idOf(n.name, 'system'),
      bootID: idOf(n.name, 'boot'),
      kernelVersion: '5.15.0-107-generic',
      kubeProxyVersion: n.kubeletVersion ?? 'v1.30.0',
      kubeletVersion: n.kubeletVersion ?? 'v1.30.0',
      osImage: 'Ubuntu 22.04.4 LTS',
      containerRuntimeVersion: 'containerd://1.7.12',
      operatingSystem: 'linux',
      architecture: 'amd64',
    },
  };
}

/** A node's Ready condition without its timestamps. */
export interface NodeReadiness {
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** A kubelet posting status: Ready. */
export const KUBELET_READY: NodeReadiness = {
  status: 'True',
  reason: 'KubeletReady',
  message: 'kubelet is posting ready status',
};
/** No status posted for the grace period: the node controller marks it Unknown. */
export const KUBELET_SILENT: NodeReadiness = {
  status: 'Unknown',
  reason: 'NodeStatusUnknown',
  message: 'Kubelet stopped posting node status.',
};

export function readyCondition(ready: boolean | NodeReadiness): Record<string, string> {
  const t = timestamp();
  const readiness = ready === true ? KUBELET_READY : ready === false ? KUBELET_SILENT : ready;
  return { type: 'Ready', ...readiness, lastHeartbeatTime: t, lastTransitionTime: t };
}

/** Stable per node, like /etc/machine-id: derived from the name. */
function idOf(name: string, what: string): string {
  return createHash('sha256').update(`${what}:${name}`).digest('hex').slice(0, 32);
}

/**
 * Sets a registered node's Ready condition to what its kubelet reports;
 * writes (and so tells watchers) only when that differs from what it says now.
 */
export function setNodeReadiness(
  store: ObjectStore,
  name: string,
  readiness: NodeReadiness,
): 'changed' | 'unchanged' | 'no-node' {
  const node = store.peek('nodes', undefined, name);
  if (!node) return 'no-node';
  const conditions = ((node.status as { conditions?: Record<string, string>[] } | undefined)
    ?.conditions ?? []) as Record<string, string>[];
  const ready = conditions.find((c) => c.type === 'Ready');
  if (
    ready?.status === readiness.status &&
    ready.reason === readiness.reason &&
    ready.message === readiness.message
  ) {
    return 'unchanged';
  }
  const next = structuredClone(node);
  (next.status as Record<string, unknown>).conditions = [readyCondition(readiness)];
  store.update('nodes', next);
  return 'changed';
}

/**
 * A registered node's kubelet reports again (Ready, at its current IP) or
 * stops reporting (Ready=Unknown, as the node controller marks it).
 */
export function setNodeReady(
  store: ObjectStore,
  name: string,
  ready: boolean,
  internalIp?: string,
): boolean {
  const node = store.peek('nodes', undefined, name);
  if (!node) return false;
  const next = structuredClone(node);
  const status = (next.status ?? {}) as Record<string, unknown>;
  status.conditions = [readyCondition(ready)];
  if (internalIp)
    status.addresses = [
      { type: 'InternalIP', address: internalIp },
      { type: 'Hostname', address: name },
    ];
  next.status = status;
  store.update('nodes', next);
  return true;
}
