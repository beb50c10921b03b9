import type { Config } from '../config/index.js';
import type { LabvirtEvent } from '../events/index.js';
import { envNamespace, type NamespaceEvent } from '../kube/index.js';

const capitalised = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * States whose change is worth an Event. Each Event is one API write (issue
 * #12 counts them): the Namespace's `labvirt.io/state` label and the session
 * annotations (claimed-at, ready-at, expires-at) already say where an env is,
 * so routine steps (provisioning, booting, claimed, preparing, active,
 * releasing) get none. `warm` carries what nothing else keeps per env (how
 * long it took to provision); `failed` is a Warning an operator must see.
 */
const EVENTFUL_STATES = new Set<string>(['warm', 'failed']);

/**
 * The Kubernetes Event (on the env's Namespace) that tells an operator what
 * happened to an env that its labels do not: when it turned warm and how long
 * that took, who started a session on it, and every failure, move and
 * restart. Undefined for the rest, and for what does not concern one env.
 */
export function namespaceEventFor(config: Config, e: LabvirtEvent): NamespaceEvent | undefined {
  switch (e.type) {
    case 'env.state': {
      if (!EVENTFUL_STATES.has(e.to)) return undefined;
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
