import type { Config } from '../config/index.js';
import type { HostCluster, VmiStatusView } from '../kube/client.js';

export type NodeName = 'control-plane' | 'worker-1' | 'worker-2';

export interface EnvNode {
  node: NodeName;
  ip: string;
}

/** The VMs a flavor has, control plane first. */
export function nodesOfFlavor(config: Config, flavor: string): NodeName[] {
  const f = config.flavors[flavor];
  if (!f) throw new Error(`unknown flavor ${flavor}`);
  return f.nodes === 3 ? ['control-plane', 'worker-1', 'worker-2'] : ['control-plane'];
}

export interface EnvVmiReport {
  /** Every expected VMI Running with an IP, Ready and AgentConnected. */
  allRunning: boolean;
  nodes: EnvNode[];
  failed: VmiStatusView[];
  unschedulable: VmiStatusView[];
  missing: NodeName[];
}

/** Reads the env's VMIs once from the API server and says how far they are. */
export async function inspectEnvVmis(
  cluster: HostCluster,
  namespace: string,
  expected: NodeName[],
): Promise<EnvVmiReport> {
  return reportOf(await cluster.listVmis(namespace), expected);
}

/** How far the env's VMIs are, from what the shared VMI watch holds (no API call). */
export function watchedEnvVmis(
  cluster: HostCluster,
  namespace: string,
  expected: NodeName[],
): EnvVmiReport {
  return reportOf(cluster.vmis().inNamespace(namespace), expected);
}

function reportOf(vmis: VmiStatusView[], expected: NodeName[]): EnvVmiReport {
  const byName = new Map(vmis.map((v) => [v.name, v]));
  const nodes: EnvNode[] = [];
  const missing: NodeName[] = [];
  let allRunning = true;
  for (const node of expected) {
    const vmi = byName.get(node);
    if (!vmi) {
      missing.push(node);
      allRunning = false;
      continue;
    }
    if (vmi.phase === 'Running' && vmi.ip && vmi.agentConnected) nodes.push({ node, ip: vmi.ip });
    else allRunning = false;
  }
  return {
    allRunning,
    nodes,
    missing,
    failed: vmis.filter((v) => v.phase === 'Failed'),
    unschedulable: vmis.filter((v) => v.unschedulable),
  };
}

/**
 * The running nodes of an env with their current IPs (IPs change when a VM
 * restarts): from the shared VMI watch when it shows them all running, else
 * read from the API server (the watch may not have caught up yet).
 */
export async function envNodes(
  cluster: HostCluster,
  namespace: string,
  expected: NodeName[],
): Promise<EnvNode[]> {
  const watch = cluster.vmis();
  await watch.synced();
  let report = watchedEnvVmis(cluster, namespace, expected);
  if (!report.allRunning) report = await inspectEnvVmis(cluster, namespace, expected);
  if (report.nodes.length !== expected.length) {
    const down = expected.filter((n) => !report.nodes.some((x) => x.node === n));
    throw new Error(`env nodes not running: ${down.join(', ')}`);
  }
  return report.nodes;
}
