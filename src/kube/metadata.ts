/**
 * Name and label syntax as the API server checks it (apimachinery's
 * validation), which the OpenAPI schemas do not express.
 */
export interface SchemaProblem {
  /** Where in the object, e.g. `spec.template.spec.domain.cpu.cores` or `metadata.labels["a/b"]`. */
  path: string;
  message: string;
  /**
   * Set when the problem is a field the schema does not declare: its JSON
   * pointer, so an API server can prune it (as a real one does by default).
   */
  unknownField?: string;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const ANNOTATIONS_MAX_BYTES = 256 * 1024;

export type NameRule = 'dns1123-label' | 'dns1123-subdomain' | 'dns1035-label';

export function nameProblem(value: string, rule: NameRule): string | undefined {
  switch (rule) {
    case 'dns1123-label':
      if (value.length > 63) return 'must be no more than 63 characters';
      if (!DNS1123_LABEL.test(value))
        return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
      return undefined;
    case 'dns1035-label':
      if (value.length > 63) return 'must be no more than 63 characters';
      if (!DNS1035_LABEL.test(value))
        return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
      return undefined;
    case 'dns1123-subdomain':
      if (value.length > 253) return 'must be no more than 253 characters';
      if (!DNS1123_SUBDOMAIN.test(value))
        return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
      return undefined;
  }
}

/** A label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name a qualified name. */
export function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length > 2) return 'a qualified name must have at most one "/"';
  const name = parts.at(-1) ?? '';
  if (parts.length === 2) {
    const prefix = parts[0] ?? '';
    if (prefix.length === 0) return 'prefix part must be non-empty';
    const p = nameProblem(prefix, 'dns1123-subdomain');
    if (p) return `prefix part ${p}`;
  }
  if (name.length === 0) return 'name part must be non-empty';
  if (name.length > 63) return 'name part must be no more than 63 characters';
  if (!QUALIFIED_NAME.test(name))
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value.length > 63) return 'must be no more than 63 characters';
  if (!LABEL_VALUE.test(value))
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  return undefined;
}

export function keyPath(base: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key)
    ? `${base}.${key}`
    : `${base}[${JSON.stringify(key)}]`;
}

/** Labels (or a selector's matchLabels): keys and values. */
export function checkLabels(labels: unknown, path: string, out: SchemaProblem[]): void {
  if (labels === undefined || labels === null) return;
  if (typeof labels !== 'object' || Array.isArray(labels)) {
    out.push({ path, message: 'must be a map of strings' });
    return;
  }
  for (const [k, v] of Object.entries(labels as Record<string, unknown>)) {
    const kp = qualifiedNameProblem(k);
    if (kp) out.push({ path: keyPath(path, k), message: `invalid label key "${k}": ${kp}` });
    if (typeof v !== 'string') {
      out.push({ path: keyPath(path, k), message: 'label value must be a string' });
      continue;
    }
    const vp = labelValueProblem(v);
    if (vp) out.push({ path: keyPath(path, k), message: `invalid label value "${v}": ${vp}` });
  }
}

export function checkAnnotations(annotations: unknown, path: string, out: SchemaProblem[]): void {
  if (annotations === undefined || annotations === null) return;
  if (typeof annotations !== 'object' || Array.isArray(annotations)) {
    out.push({ path, message: 'must be a map of strings' });
    return;
  }
  let size = 0;
  for (const [k, v] of Object.entries(annotations as Record<string, unknown>)) {
    const kp = qualifiedNameProblem(k.toLowerCase());
    if (kp) out.push({ path: keyPath(path, k), message: `invalid annotation key "${k}": ${kp}` });
    if (typeof v !== 'string') {
      out.push({ path: keyPath(path, k), message: 'annotation value must be a string' });
      continue;
    }
    size += k.length + v.length;
  }
  if (size > ANNOTATIONS_MAX_BYTES) {
    out.push({ path, message: `may not be more than ${ANNOTATIONS_MAX_BYTES} bytes` });
  }
}

/** What a kind's `metadata.name` must look like (as the API server checks it). */
export function nameRuleOf(kind: string): NameRule {
  switch (kind) {
    case 'Namespace':
      return 'dns1123-label';
    case 'Service':
      return 'dns1035-label';
    default:
      return 'dns1123-subdomain';
  }
}

const CLUSTER_SCOPED = new Set(['Namespace', 'Node', 'PersistentVolume']);

/** The object's own metadata: name (or generateName), namespace, labels, annotations. */
export function checkObjectMeta(kind: string, meta: unknown, out: SchemaProblem[]): void {
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) {
    out.push({ path: 'metadata', message: 'Required value' });
    return;
  }
  const m = meta as Record<string, unknown>;
  const rule = nameRuleOf(kind);
  if (typeof m.name === 'string' && m.name !== '') {
    const p = nameProblem(m.name, rule);
    if (p) out.push({ path: 'metadata.name', message: `Invalid value: "${m.name}": ${p}` });
  } else if (typeof m.generateName === 'string' && m.generateName !== '') {
    // The server appends 5 characters; the prefix alone may end in '-'.
    const p = nameProblem(`${m.generateName}a`, rule);
    if (p)
      out.push({
        path: 'metadata.generateName',
        message: `Invalid value: "${m.generateName}": ${p}`,
      });
  } else {
    out.push({
      path: 'metadata.name',
      message: 'Required value: name or generateName is required',
    });
  }
  if (typeof m.namespace === 'string' && m.namespace !== '') {
    if (CLUSTER_SCOPED.has(kind)) {
      out.push({ path: 'metadata.namespace', message: 'not allowed on a cluster-scoped object' });
    } else {
      const p = nameProblem(m.namespace, 'dns1123-label');
      if (p)
        out.push({ path: 'metadata.namespace', message: `Invalid value: "${m.namespace}": ${p}` });
    }
  }
  checkLabels(m.labels, 'metadata.labels', out);
  checkAnnotations(m.annotations, 'metadata.annotations', out);
}
