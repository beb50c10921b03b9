/**
 * Kubernetes NetworkPolicy semantics, for tests and the simulator: given the
 * policies that exist and one connection, would it be allowed?
 *
 * - A pod is isolated for ingress (egress) when at least one policy in its
 *   namespace selects it and has `Ingress` (`Egress`) in its policyTypes
 *   (policyTypes defaults to Ingress, plus Egress when egress rules exist).
 * - A connection passes when the source's egress allows it (or the source is
 *   not isolated for egress, or is not a pod) AND the destination's ingress
 *   allows it (or likewise). Policies are additive: any rule of any selecting
 *   policy suffices. Replies to an allowed connection are not evaluated.
 * - A rule without `from`/`to` matches every peer; without `ports`, every
 *   port. A peer is a podSelector (same namespace), a namespaceSelector, both
 *   (pods matching in matching namespaces), or an ipBlock (`cidr` minus
 *   `except`; matched against pod IPs too, as common CNIs do).
 * - A port is a number (with `endPort`, a range) or a name resolved against
 *   the destination pod's named ports; protocol defaults to TCP.
 */

export interface PodEndpoint {
  namespace: string;
  /** The namespace's labels, `kubernetes.io/metadata.name` included. */
  namespaceLabels: Record<string, string>;
  podLabels: Record<string, string>;
  ip?: string;
  /** Named container ports of the pod, e.g. `{ ssh: { port: 22 } }`. */
  namedPorts?: Record<string, { port: number; protocol?: Protocol }>;
}

export interface ExternalEndpoint {
  /** Outside the cluster (or a node): only ipBlock peers match it. */
  ip: string;
}

export type Endpoint = PodEndpoint | ExternalEndpoint;
export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export interface Connection {
  from: Endpoint;
  to: Endpoint;
  port: number;
  protocol?: Protocol;
}

export interface PolicyDecision {
  allowed: boolean;
  reason: string;
}

export interface LabelSelector {
  matchLabels?: Record<string, string> | null;
  matchExpressions?: { key: string; operator: string; values?: string[] | null }[] | null;
}

interface PolicyPort {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}
interface PolicyPeer {
  podSelector?: LabelSelector | null;
  namespaceSelector?: LabelSelector | null;
  ipBlock?: { cidr: string; except?: string[] | null } | null;
}
interface PolicyRule {
  from?: PolicyPeer[] | null;
  to?: PolicyPeer[] | null;
  ports?: PolicyPort[] | null;
}
export interface NetworkPolicyLike {
  metadata?: { name?: string; namespace?: string };
  spec?: {
    podSelector?: LabelSelector | null;
    policyTypes?: string[] | null;
    ingress?: PolicyRule[] | null;
    egress?: PolicyRule[] | null;
  };
}

export function isPodEndpoint(e: Endpoint): e is PodEndpoint {
  return 'namespace' in e && typeof (e as PodEndpoint).namespace === 'string';
}

type Direction = 'Ingress' | 'Egress';

export function evaluateNetworkPolicies(
  policies: readonly NetworkPolicyLike[] | readonly unknown[],
  conn: Connection,
): PolicyDecision {
  const list = policies as readonly NetworkPolicyLike[];
  const protocol = conn.protocol ?? 'TCP';
  const egress = evaluateSide(list, 'Egress', conn.from, conn.to, conn.port, protocol);
  if (!egress.allowed) return egress;
  const ingress = evaluateSide(list, 'Ingress', conn.to, conn.from, conn.port, protocol);
  if (!ingress.allowed) return ingress;
  return { allowed: true, reason: `${egress.reason}; ${ingress.reason}` };
}

/** One side: `subject`'s policies for `direction`, with `peer` at the other end. */
function evaluateSide(
  policies: readonly NetworkPolicyLike[],
  direction: Direction,
  subject: Endpoint,
  peer: Endpoint,
  port: number,
  protocol: Protocol,
): PolicyDecision {
  const side = direction === 'Egress' ? 'egress' : 'ingress';
  if (!isPodEndpoint(subject)) {
    return { allowed: true, reason: `${side}: ${subject.ip} is not a pod (no policy applies)` };
  }
  const who = `${subject.namespace}/${describeLabels(subject.podLabels)}`;
  const selecting = policies.filter(
    (p) =>
      (p.metadata?.namespace ?? '') === subject.namespace &&
      policyTypes(p).includes(direction) &&
      selectorMatches(p.spec?.podSelector ?? {}, subject.podLabels),
  );
  if (selecting.length === 0) {
    return { allowed: true, reason: `${side} of ${who}: not isolated` };
  }
  // For ingress the destination is the subject; for egress, the peer.
  const destination = direction === 'Ingress' ? subject : peer;
  for (const p of selecting) {
    const rules = (direction === 'Ingress' ? p.spec?.ingress : p.spec?.egress) ?? [];
    for (const [i, rule] of rules.entries()) {
      const peers = (direction === 'Ingress' ? rule.from : rule.to) ?? [];
      const peerOk =
        peers.length === 0 || peers.some((x) => peerMatches(x, peer, p.metadata?.namespace ?? ''));
      if (peerOk && portsMatch(rule.ports ?? [], port, protocol, destination)) {
        return {
          allowed: true,
          reason: `${side} of ${who}: allowed by ${p.metadata?.namespace}/${p.metadata?.name} ${side}[${i}]`,
        };
      }
    }
  }
  return {
    allowed: false,
    reason: `${side} of ${who} denied: isolated by ${selecting
      .map((p) => p.metadata?.name ?? '?')
      .join(', ')} and no ${side} rule matches ${describeEndpoint(peer)} port ${port}/${protocol}`,
  };
}

function policyTypes(p: NetworkPolicyLike): Direction[] {
  const declared = p.spec?.policyTypes;
  if (declared && declared.length > 0) return declared as Direction[];
  return p.spec?.egress && p.spec.egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

function peerMatches(peer: PolicyPeer, endpoint: Endpoint, policyNamespace: string): boolean {
  if (peer.ipBlock) {
    const ip = endpoint.ip;
    if (!ip || !cidrContains(peer.ipBlock.cidr, ip)) return false;
    return !(peer.ipBlock.except ?? []).some((c) => cidrContains(c, ip));
  }
  if (!isPodEndpoint(endpoint)) return false;
  const { podSelector, namespaceSelector } = peer;
  if (!podSelector && !namespaceSelector) return false;
  const nsOk = namespaceSelector
    ? selectorMatches(namespaceSelector, endpoint.namespaceLabels)
    : endpoint.namespace === policyNamespace;
  const podOk = podSelector ? selectorMatches(podSelector, endpoint.podLabels) : true;
  return nsOk && podOk;
}

function portsMatch(
  ports: PolicyPort[],
  port: number,
  protocol: Protocol,
  destination: Endpoint,
): boolean {
  if (ports.length === 0) return true;
  return ports.some((p) => {
    if ((p.protocol ?? 'TCP') !== protocol) return false;
    if (p.port === undefined || p.port === null) return true;
    if (typeof p.port === 'string') {
      if (/^[0-9]+$/.test(p.port)) return Number(p.port) === port;
      const named = isPodEndpoint(destination) ? destination.namedPorts?.[p.port] : undefined;
      return !!named && named.port === port && (named.protocol ?? 'TCP') === protocol;
    }
    if (p.endPort !== undefined && p.endPort !== null) return port >= p.port && port <= p.endPort;
    return port === p.port;
  });
}

/** Kubernetes label selector semantics; `{}` matches everything. */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const expr of selector.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, expr.key);
    const value = labels[expr.key];
    const values = expr.values ?? [];
    switch (expr.operator) {
      case 'In':
        if (!has || !values.includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

function parseIpv4(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((x) => x > 255)) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** Whether IPv4 `ip` lies in `cidr` (an IPv6 address never matches an IPv4 block). */
export function cidrContains(cidr: string, ip: string): boolean {
  const [base, bitsText] = cidr.split('/');
  const bits = bitsText === undefined ? 32 : Number(bitsText);
  const b = parseIpv4(base ?? '');
  const a = parseIpv4(ip);
  if (b === undefined || a === undefined || !(bits >= 0 && bits <= 32)) return false;
  if (bits === 0) return true;
  const mask = (0xffffffff << (32 - bits)) >>> 0;
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

function describeLabels(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return parts.length > 0 ? `{${parts.join(',')}}` : '{}';
}

function describeEndpoint(e: Endpoint): string {
  return isPodEndpoint(e) ? `pod ${e.namespace}/${describeLabels(e.podLabels)}` : e.ip;
}
