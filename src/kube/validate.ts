import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsImport from 'ajv-formats';
import type { KubeObject } from './client.js';
import { BUILTIN_KINDS } from './kinds.js';
import {
  checkAnnotations,
  checkLabels,
  checkObjectMeta,
  keyPath,
  type SchemaProblem,
} from './metadata.js';
import { KUBEVIRT_SCHEMA_FILES, kubevirtSchemasDir, loadCrdSchema } from './schema-crd.js';
import { K8S_SCHEMA_ID, k8sDefinitions } from './schema-k8s.js';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsImport as unknown as typeof addFormatsImport.default;

export type { SchemaProblem };

const KUBEVIRT_API = 'kubevirt.io/v1';

/**
 * Validators are compiled on first use of a kind and kept for the life of the
 * process: the simulator validates every create and update.
 */
let ajv: Ajv | undefined;
const compiled = new Map<string, ValidateFunction>();

function getAjv(): Ajv {
  if (ajv) return ajv;
  const a = new Ajv({ allErrors: true, strict: false, validateFormats: true });
  addFormats(a);
  const models = [
    ...new Set([...Object.values(BUILTIN_KINDS).map((k) => k.model), 'V1ObjectMeta']),
  ];
  a.addSchema({ $id: K8S_SCHEMA_ID, definitions: k8sDefinitions(models) });
  ajv = a;
  return a;
}

function validatorFor(key: string, kind: string): ValidateFunction | undefined {
  const kubevirt = key.startsWith(`${KUBEVIRT_API}/`) && KUBEVIRT_SCHEMA_FILES[kind] !== undefined;
  // KubeVirt validators are kept per schema folder (LABVIRT_KUBEVIRT_SCHEMAS may change).
  const cacheKey = kubevirt ? `${key}@${kubevirtSchemasDir()}` : key;
  const cached = compiled.get(cacheKey);
  if (cached) return cached;
  const a = getAjv();
  let fn: ValidateFunction | undefined;
  const builtin = BUILTIN_KINDS[key];
  if (builtin) {
    fn = a.getSchema(`${K8S_SCHEMA_ID}#/definitions/${builtin.model}`);
  } else if (kubevirt) {
    const formats = new Set<string>();
    const schema = loadCrdSchema(kind, formats);
    // Formats Kubernetes knows and ajv-formats does not are accepted as is.
    for (const f of formats) if (!a.formats[f]) a.addFormat(f, true);
    fn = a.compile(schema);
  }
  if (fn) compiled.set(cacheKey, fn);
  return fn;
}

/**
 * Problems with one object as a strict API server would report them
 * (`kubectl apply --validate=strict`): unknown fields, wrong types, missing
 * required fields, values outside an enum, bad names, label keys and values.
 * Built-in kinds are checked against Kubernetes' schemas (client-node's models
 * for structure, kubernetes-models for required/enum/format); KubeVirt's
 * VirtualMachine and VirtualMachineInstance against KubeVirt's CRD schemas.
 * An empty list means valid. Throws `KubevirtSchemasMissingError` when a
 * KubeVirt kind is asked for and the schema folder is missing.
 */
export function validateObject(obj: unknown): SchemaProblem[] {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    return [{ path: '', message: 'must be an object' }];
  }
  const o = obj as Record<string, unknown>;
  const out: SchemaProblem[] = [];
  if (typeof o.apiVersion !== 'string' || o.apiVersion === '') {
    out.push({ path: 'apiVersion', message: 'Required value' });
  }
  if (typeof o.kind !== 'string' || o.kind === '')
    out.push({ path: 'kind', message: 'Required value' });
  if (out.length > 0) return out;
  const kind = o.kind as string;
  const key = `${o.apiVersion as string}/${kind}`;

  const fn = validatorFor(key, kind);
  if (!fn) return [{ path: 'kind', message: `no schema known for ${key}` }];
  if (!fn(obj)) out.push(...problemsOf(fn.errors ?? []));
  const builtin = BUILTIN_KINDS[key];
  if (builtin && !builtin.validate(obj)) {
    // Structure and types come from the strict schema above; take what only
    // kubernetes-models knows (required fields, enums, formats, bounds).
    const errors = (builtin.validate.errors ?? []) as ErrorObject[];
    out.push(...problemsOf(errors.filter((e) => !TYPE_KEYWORDS.has(e.keyword))));
  }
  checkObjectMeta(kind, o.metadata, out);
  checkNested(o, out);
  return dedupe(out);
}

const TYPE_KEYWORDS = new Set(['type', 'anyOf', 'oneOf', 'additionalProperties']);

/** Label maps beyond the object's own metadata that the API server checks. */
function checkNested(o: Record<string, unknown>, out: SchemaProblem[]): void {
  const spec = o.spec as Record<string, unknown> | undefined;
  if (o.kind === 'VirtualMachine' && spec && typeof spec === 'object') {
    // The template's labels become the virt-launcher pod's labels.
    const meta = (spec.template as { metadata?: Record<string, unknown> } | undefined)?.metadata;
    if (meta && typeof meta === 'object') {
      checkLabels(meta.labels, 'spec.template.metadata.labels', out);
      checkAnnotations(meta.annotations, 'spec.template.metadata.annotations', out);
    }
  }
  if (o.kind === 'Service' && spec && typeof spec === 'object') {
    checkLabels(spec.selector, 'spec.selector', out);
  }
  walkSelectors(spec, 'spec', out);
}

function walkSelectors(node: unknown, path: string, out: SchemaProblem[]): void {
  if (!node || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    node.forEach((x, i) => walkSelectors(x, `${path}[${i}]`, out));
    return;
  }
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (k === 'matchLabels') checkLabels(v, `${path}.matchLabels`, out);
    else walkSelectors(v, keyPath(path, k), out);
  }
}

function problemsOf(errors: ErrorObject[]): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  // An int-or-string or nullable field reports one error per alternative
  // plus the anyOf itself: keep one message per place.
  const anyOfPaths = new Set(
    errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath),
  );
  for (const e of errors) {
    if (e.keyword === 'type' && anyOfPaths.has(e.instancePath)) continue;
    out.push(toProblem(e));
  }
  return out;
}

function toProblem(e: ErrorObject): SchemaProblem {
  const path = pointerToPath(e.instancePath);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const field = String(params.additionalProperty);
      return {
        path: keyPath(path, field).replace(/^\./, ''),
        message: `unknown field "${field}"`,
        unknownField: `${e.instancePath}/${field.replace(/~/g, '~0').replace(/\//g, '~1')}`,
      };
    }
    case 'required': {
      const field = String(params.missingProperty);
      return { path: keyPath(path, field).replace(/^\./, ''), message: 'Required value' };
    }
    case 'type': {
      const t = Array.isArray(params.type) ? params.type : [params.type];
      const types = t.filter((x) => x !== 'null').join(' or ');
      return { path, message: `Invalid type: expected ${types}` };
    }
    case 'anyOf':
      return {
        path,
        message: 'Invalid value: not one of the allowed types (e.g. an integer or a string)',
      };
    case 'enum':
      return {
        path,
        message: `Unsupported value: supported values: ${(params.allowedValues as unknown[])
          .map((v) => JSON.stringify(v))
          .join(', ')}`,
      };
    case 'pattern':
      return { path, message: `Invalid value: must match ${String(params.pattern)}` };
    case 'format':
      return {
        path,
        message: `Invalid value: ${FORMATS[String(params.format)] ?? `must be a ${String(params.format)}`}`,
      };
    default:
      return { path, message: e.message ?? `fails ${e.keyword} ${JSON.stringify(params)}` };
  }
}

const FORMATS: Record<string, string> = {
  byte: 'must be base64-encoded',
  quantity: 'must be a quantity',
  'date-time': 'must be an RFC 3339 date-time',
  int32: 'must be a 32-bit integer',
  int64: 'must be a 64-bit integer',
};

function pointerToPath(pointer: string): string {
  if (!pointer) return '';
  let path = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    path = /^[0-9]+$/.test(seg) ? `${path}[${seg}]` : keyPath(path, seg);
  }
  return path.replace(/^\./, '');
}

function dedupe(problems: SchemaProblem[]): SchemaProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.path}\u0000${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export class SchemaValidationError extends Error {
  constructor(readonly problems: { object: string; problem: SchemaProblem }[]) {
    super(
      `invalid objects:\n${problems
        .map(
          ({ object, problem }) => `  - ${object}: ${problem.path || '(root)'}: ${problem.message}`,
        )
        .join('\n')}`,
    );
    this.name = 'SchemaValidationError';
  }
}

/** Throws a `SchemaValidationError` naming every problem of every object. */
export function assertValid(objects: readonly (KubeObject | Record<string, unknown>)[]): void {
  const found: { object: string; problem: SchemaProblem }[] = [];
  for (const obj of objects) {
    const meta = (obj as { metadata?: { name?: string; namespace?: string } }).metadata;
    const name = `${String((obj as { kind?: unknown }).kind ?? '?')} ${meta?.namespace ? `${meta.namespace}/` : ''}${meta?.name ?? '?'}`;
    for (const problem of validateObject(obj)) found.push({ object: name, problem });
  }
  if (found.length > 0) throw new SchemaValidationError(found);
}
