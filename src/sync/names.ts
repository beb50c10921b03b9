import { createHash } from 'node:crypto';

/** Labels on a mirror Service: what it is, and which student port it stands for. */
export const SYNC_LABELS = {
  /** `mirror` on every host Service the sync creates (and on its NetworkPolicy). */
  component: 'labvirt.io/sync',
  studentNamespace: 'labvirt.io/student-namespace',
  studentService: 'labvirt.io/student-service',
  studentPort: 'labvirt.io/student-port',
  studentProtocol: 'labvirt.io/student-protocol',
} as const;

export const SYNC_ANNOTATIONS = {
  /** On a mirror Service: the student's nodePort it forwards to. */
  studentNodePort: 'labvirt.io/student-node-port',
  /** On the env Namespace: refusals already reported (JSON), so each is reported once. */
  refused: 'labvirt.io/sync-refused',
} as const;

/** The env's NetworkPolicy that opens exactly the mirrored ports. */
export const MIRROR_POLICY = 'allow-synced-nodeports';

const MAX_NAME = 63;
const HASH_CHARS = 10;

/**
 * A host Service name for one student port, deterministic so that a restarted
 * labvirt finds what it made: `<service>-x-<namespace>-x-<port>` (plus the
 * protocol when not TCP), as vcluster names synced Services; past 63
 * characters it is cut and ends in a hash of the whole key. Student Service
 * names are DNS-1035 labels, so the result is one too.
 */
export function mirrorName(
  studentNamespace: string,
  studentService: string,
  port: number,
  protocol: string,
): string {
  const suffix = protocol === 'TCP' ? `${port}` : `${port}-${protocol.toLowerCase()}`;
  const full = `${studentService}-x-${studentNamespace}-x-${suffix}`;
  if (full.length <= MAX_NAME) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, HASH_CHARS);
  const head = full.slice(0, MAX_NAME - HASH_CHARS - 1).replace(/-+$/, '');
  return `${head}-${hash}`;
}
