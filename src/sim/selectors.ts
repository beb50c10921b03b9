import { ApiError, type Obj, type ResourceType } from './store.js';

type Requirement = (labels: Record<string, string>) => boolean;

/** Parses a Kubernetes label selector (`a=b,c!=d,e in (f,g),!h,i`). */
export function parseLabelSelector(text: string | undefined): Requirement {
  if (!text) return () => true;
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur) parts.push(cur);
  const reqs: Requirement[] = parts.map((raw) => {
    const p = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p))) {
      const [, key, op, list] = m as unknown as [string, string, string, string];
      const values = new Set(list.split(',').map((v) => v.trim()));
      return op === 'in'
        ? (l) => key in l && values.has(l[key]!)
        : (l) => !(key in l) || !values.has(l[key]!);
    }
    if ((m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(p))) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
    }
    if ((m = /^!([\w./-]+)$/.exec(p))) {
      const key = m[1]!;
      return (l) => !(key in l);
    }
    if ((m = /^([\w./-]+)$/.exec(p))) {
      const key = m[1]!;
      return (l) => key in l;
    }
    throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${p}`);
  });
  return (labels) => reqs.every((r) => r(labels));
}

/**
 * Field labels each kind's REST storage accepts (k8s.io/kubernetes
 * pkg/registry/.../strategy.go GetAttrs). Custom resources — KubeVirt's
 * among them — take only metadata.name and metadata.namespace.
 */
const FIELD_LABELS: Record<string, string[]> = {
  pods: [
    'spec.nodeName',
    'spec.restartPolicy',
    'spec.schedulerName',
    'spec.serviceAccountName',
    'spec.hostNetwork',
    'status.phase',
    'status.podIP',
    'status.nominatedNodeName',
  ],
  namespaces: ['status.phase'],
  nodes: ['spec.unschedulable'],
  secrets: ['type'],
  events: [
    'involvedObject.kind',
    'involvedObject.namespace',
    'involvedObject.name',
    'involvedObject.uid',
    'involvedObject.apiVersion',
    'involvedObject.resourceVersion',
    'involvedObject.fieldPath',
    'reason',
    'reportingComponent',
    'source',
    'type',
  ],
};

/**
 * A field selector as `type`'s storage evaluates it; unsupported labels are
 * 400 as on a real server. Custom resources word the refusal by version:
 * since 1.31 (CustomResourceFieldSelectors on by default) with apimachinery's
 * `DefaultMetaV1FieldSelectorConversion`, before that "field label not supported".
 */
export function parseFieldSelector(
  text: string | undefined,
  type: ResourceType,
  kubernetesMinor = 30,
): (o: Obj) => boolean {
  if (!text) return () => true;
  const custom = type.group !== '' && !type.group.endsWith('.k8s.io') && kubernetesMinor >= 31;
  const allowed = new Set([
    'metadata.name',
    'metadata.namespace',
    ...(FIELD_LABELS[type.plural] ?? []),
  ]);
  const reqs = text.split(',').map((raw) => {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(raw.trim());
    if (!m) throw new ApiError(400, 'BadRequest', `invalid field selector: ${raw}`);
    const [, field, op, value] = m as unknown as [string, string, string, string];
    if (!allowed.has(field)) {
      throw new ApiError(
        400,
        'BadRequest',
        custom
          ? `"${field}" is not a known field selector: only "metadata.name", "metadata.namespace"`
          : `field label not supported: ${field}`,
      );
    }
    const get = (o: Obj): unknown =>
      field
        .split('.')
        .reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);
    return op === '!='
      ? (o: Obj) => String(get(o) ?? '') !== value
      : (o: Obj) => String(get(o) ?? '') === value;
  });
  return (o) => reqs.every((r) => r(o));
}
