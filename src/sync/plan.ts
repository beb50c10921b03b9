import type { V1Service } from '@kubernetes/client-node';
import { mirrorName } from './names.js';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** One port of a student Service that a node port exposes. */
export interface StudentPort {
  namespace: string;
  service: string;
  port: number;
  protocol: Protocol;
  nodePort: number;
}

export interface PlannedMirror extends StudentPort {
  /** The host Service's name. */
  name: string;
}

/** A student port labvirt did not publish, and why (in words for the student). */
export interface RefusedPort {
  /** `namespace/service`. */
  service: string;
  port: number;
  protocol: Protocol;
  reason: string;
}

export interface SyncLimits {
  maxPortsPerEnv: number;
  protocols: readonly Protocol[];
  studentPortRange: { min: number; max: number };
}

export interface MirrorPlan {
  mirrors: PlannedMirror[];
  refused: RefusedPort[];
}

/** The node ports of the student's NodePort and LoadBalancer Services, oldest Service first. */
export function studentPorts(services: readonly V1Service[]): StudentPort[] {
  const exposed = services
    .filter((s) => s.spec?.type === 'NodePort' || s.spec?.type === 'LoadBalancer')
    .sort((a, b) => created(a) - created(b) || key(a).localeCompare(key(b)));
  const out: StudentPort[] = [];
  for (const svc of exposed) {
    for (const p of svc.spec?.ports ?? []) {
      // A node port not allocated yet (or a LoadBalancer without them) exposes nothing.
      if (!p.nodePort) continue;
      out.push({
        namespace: svc.metadata?.namespace ?? 'default',
        service: svc.metadata?.name ?? '',
        port: p.port,
        protocol: (p.protocol ?? 'TCP') as Protocol,
        nodePort: p.nodePort,
      });
    }
  }
  return out;
}

const created = (s: V1Service) => new Date(s.metadata?.creationTimestamp ?? 0).getTime() || 0;
const key = (s: V1Service) => `${s.metadata?.namespace}/${s.metadata?.name}`;

/**
 * Which student ports get a host mirror, within the limits. Ports mirrored
 * already keep their place (a new Service never evicts an older one); the
 * rest follow in the order the student created them. Pure: the same input
 * gives the same plan, whoever runs it and however often.
 */
export function planMirrors(
  ports: readonly StudentPort[],
  limits: SyncLimits,
  alreadyMirrored: ReadonlySet<string>,
): MirrorPlan {
  const mirrors: PlannedMirror[] = [];
  const refused: RefusedPort[] = [];
  const candidates: PlannedMirror[] = [];
  for (const p of ports) {
    const refuse = (reason: string) =>
      refused.push({
        service: `${p.namespace}/${p.service}`,
        port: p.port,
        protocol: p.protocol,
        reason,
      });
    if (!limits.protocols.includes(p.protocol)) {
      refuse(`protocol ${p.protocol} is not published (allowed: ${limits.protocols.join(', ')})`);
      continue;
    }
    const { min, max } = limits.studentPortRange;
    if (p.nodePort < min || p.nodePort > max) {
      refuse(`node port ${p.nodePort} is outside the published range ${min}-${max}`);
      continue;
    }
    candidates.push({ ...p, name: mirrorName(p.namespace, p.service, p.port, p.protocol) });
  }
  const ordered = [
    ...candidates.filter((c) => alreadyMirrored.has(c.name)),
    ...candidates.filter((c) => !alreadyMirrored.has(c.name)),
  ];
  for (const c of ordered) {
    if (mirrors.length < limits.maxPortsPerEnv) mirrors.push(c);
    else
      refused.push({
        service: `${c.namespace}/${c.service}`,
        port: c.port,
        protocol: c.protocol,
        reason: `at most ${limits.maxPortsPerEnv} port${limits.maxPortsPerEnv === 1 ? '' : 's'} per lab`,
      });
  }
  return { mirrors, refused };
}

/** How a refusal reads for the student: "web:80 not published: at most 5 ports per lab". */
export function refusalMessage(r: RefusedPort): string {
  const name = r.service.split('/')[1] ?? r.service;
  const proto = r.protocol === 'TCP' ? '' : `/${r.protocol}`;
  return `${name}:${r.port}${proto} not published: ${r.reason}`;
}

export function refusalKey(r: RefusedPort): string {
  return `${r.service}:${r.port}/${r.protocol}:${r.reason}`;
}
