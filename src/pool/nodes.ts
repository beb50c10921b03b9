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
  /** Every expected VMI Running and AgentConnected (their addresses are read apart). */
  allRunning: boolean;
  /** The expected VMIs that run, with the uid that finds their launcher pod. */
  running: { node: NodeName; uid: string }[];
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
  const running: EnvVmiReport['running'] = [];
  const missing: NodeName[] = [];
  let allRunning = true;
  for (const node of expected) {
    const vmi = byName.get(node);
    if (!vmi) {
      missing.push(node);
      allRunning = false;
      continue;
    }
    if (vmi.phase === 'Running' && vmi.agentConnected && vmi.uid)
      running.push({ node, uid: vmi.uid });
    else allRunning = false;
  }
  return {
    allRunning,
    running,
    missing,
    failed: vmis.filter((v) => v.phase === 'Failed'),
    unschedulable: vmis.filter((v) => v.unschedulable),
  };
}

/**
 * The addresses of running nodes: each VMI's launcher pod IP (never what the
 * guest reports, see HostCluster.launcherAddresses). `unknown` lists the
 * nodes whose pod has no address (yet).
 */
export async function nodeAddresses(
  cluster: HostCluster,
  namespace: string,
  running: EnvVmiReport['running'],
): Promise<{ nodes: EnvNode[]; unknown: NodeName[] }> {
  const addresses = await cluster.launcherAddresses(namespace);
  const nodes: EnvNode[] = [];
  const unknown: NodeName[] = [];
  for (const { node, uid } of running) {
    const ip = addresses.get(uid);
    if (ip) nodes.push({ node, ip });
    else unknown.push(node);
  }
  return { nodes, unknown };
}

/**
 * The running nodes of an env with their current addresses (they change
 * when a VM restarts): which VMIs run from the shared VMI watch when it shows
 * them all running, else read from the API server (the watch may not have
 * caught up yet); their addresses from their launcher pods.
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
  const down = expected.filter((n) => !report.running.some((x) => x.node === n));
  if (down.length > 0) throw new Error(`env nodes not running: ${down.join(', ')}`);
  const { nodes, unknown } = await nodeAddresses(cluster, namespace, report.running);
  if (unknown.length > 0)
    throw new Error(`env nodes without an address yet: ${unknown.join(', ')}`);
  return nodes;
}
