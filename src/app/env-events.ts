import type { Config } from '../config/index.js';
import type { LabvirtEvent } from '../events/index.js';
import { envNamespace, type NamespaceEvent } from '../kube/index.js';

const capitalised = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * The Kubernetes Event (on the env's Namespace) that tells an operator what
 * happened to an env: its state changes and failures, and who holds it.
 * Undefined for what does not concern one env.
 */
export function namespaceEventFor(config: Config, e: LabvirtEvent): NamespaceEvent | undefined {
  switch (e.type) {
    case 'env.state': {
      const took =
        e.provisionMs !== undefined ? ` after ${(e.provisionMs / 1000).toFixed(1)} s` : '';
      return {
        namespace: envNamespace(config, e.envId),
        type: e.to === 'failed' ? 'Warning' : 'Normal',
        reason: capitalised(e.to),
        message: `${e.from ?? 'new'} → ${e.to}${took}${e.reason ? `: ${e.reason}` : ''}`,
      };
    }
    case 'env.failed':
      return {
        namespace: envNamespace(config, e.envId),
        type: 'Warning',
        reason: 'ProvisionFailed',
        message: `attempt ${e.attempt} failed (${e.willRetry ? 'will retry' : 'giving up'}): ${e.reason}`,
      };
    case 'session.ready':
      return {
        namespace: envNamespace(config, e.envId),
        type: 'Normal',
        reason: 'SessionStarted',
        message: `session ${e.sessionId} of student ${e.student}, lab ${e.labId}`,
      };
    case 'session.node-restarted':
      return {
        namespace: envNamespace(config, e.envId),
        type: 'Warning',
        reason: 'NodeRestarted',
        message: `${e.node} came back as a new VM during session ${e.sessionId}: its disk is fresh`,
      };
    case 'session.moved':
      return {
        namespace: envNamespace(config, e.fromEnvId),
        type: 'Warning',
        reason: 'SessionMoved',
        message: `session ${e.sessionId} moved to another env: ${e.reason}`,
      };
    default:
      return undefined;
  }
}
