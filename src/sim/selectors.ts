import { ApiError, type Obj } from './store.js';

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

/** Field selectors the sim supports: metadata.name, metadata.namespace, status.phase, spec.nodeName. */
export function parseFieldSelector(text: string | undefined): (o: Obj) => boolean {
  if (!text) return () => true;
  const reqs = text.split(',').map((raw) => {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(raw.trim());
    if (!m) throw new ApiError(400, 'BadRequest', `invalid field selector: ${raw}`);
    const [, field, op, value] = m as unknown as [string, string, string, string];
    const get = (o: Obj): unknown =>
      field
        .split('.')
        .reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);
    if (!['metadata.name', 'metadata.namespace', 'status.phase', 'spec.nodeName'].includes(field)) {
      throw new ApiError(400, 'BadRequest', `field label not supported: ${field}`);
    }
    return op === '!='
      ? (o: Obj) => String(get(o) ?? '') !== value
      : (o: Obj) => String(get(o) ?? '') === value;
  });
  return (o) => reqs.every((r) => r(o));
}
