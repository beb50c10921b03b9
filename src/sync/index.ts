import type { V1Namespace } from '@kubernetes/client-node';
import type { Config } from '../config/index.js';
import type { HostCluster } from '../kube/index.js';
import { readRefused } from './controller.js';
import { HostMirrors, type PublishedPort } from './host.js';
import { refusalMessage as refusalMessageOf, type RefusedPort } from './plan.js';

export { NodePortSync, type NodePortSyncOptions } from './controller.js';
export { mirrorName, MIRROR_POLICY, SYNC_ANNOTATIONS, SYNC_LABELS } from './names.js';
export { refusalMessage, type RefusedPort, type Protocol } from './plan.js';
export type { PublishedPort } from './host.js';

export interface EnvPorts {
  published: PublishedPort[];
  refused: (RefusedPort & { message: string })[];
}

/** What an env publishes and what was refused, read from the host (any replica can answer). */
export async function readEnvPorts(
  cluster: HostCluster,
  config: Config,
  namespace: V1Namespace,
): Promise<EnvPorts> {
  const published = await readPublishedPorts(cluster, config, namespace.metadata?.name ?? '');
  return { published, refused: refusedPorts(namespace) };
}

/** The env's mirrored ports, by its namespace's name (readable before the Namespace itself is). */
export function readPublishedPorts(
  cluster: HostCluster,
  config: Config,
  namespace: string,
): Promise<PublishedPort[]> {
  return new HostMirrors(cluster, config).published(namespace);
}

/** The ports the sync refused to publish, from the env's Namespace. */
export function refusedPorts(namespace: V1Namespace): EnvPorts['refused'] {
  return readRefused(namespace.metadata?.annotations).map((r) => ({
    ...r,
    message: refusalMessageOf(r),
  }));
}
