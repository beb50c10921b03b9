import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { K8S_SCHEMA_ID, type JsonSchema } from './schema-k8s.js';
import { PROJECT_ROOT } from './templates.js';

/** Raised when KubeVirt's CRD schemas cannot be found; tests skip on it. */
export class KubevirtSchemasMissingError extends Error {
  constructor(readonly dir: string) {
    super(
      `KubeVirt CRD schemas are missing: no ${dir}/virtualmachine.crd-schema.json ` +
        '(set LABVIRT_KUBEVIRT_SCHEMAS to the folder holding the *.crd-schema.json files)',
    );
    this.name = 'KubevirtSchemasMissingError';
  }
}

/**
 * KubeVirt's schemas: `../shared/schemas/kubevirt` beside the project root
 * (they are never copied into the project), or `$LABVIRT_KUBEVIRT_SCHEMAS`.
 */
export function kubevirtSchemasDir(): string {
  const env = process.env.LABVIRT_KUBEVIRT_SCHEMAS;
  if (env) return isAbsolute(env) ? env : resolve(process.cwd(), env);
  return resolve(PROJECT_ROOT, '..', 'shared', 'schemas', 'kubevirt');
}

export const KUBEVIRT_SCHEMA_FILES: Record<string, string> = {
  VirtualMachine: 'virtualmachine.crd-schema.json',
  VirtualMachineInstance: 'virtualmachineinstance.crd-schema.json',
};

export function kubevirtSchemasPresent(): boolean {
  return existsSync(join(kubevirtSchemasDir(), KUBEVIRT_SCHEMA_FILES.VirtualMachine!));
}

/** A CRD's openAPIV3Schema made strict, with `metadata` checked as ObjectMeta. */
export function loadCrdSchema(kind: string, formats: Set<string>): JsonSchema {
  const file = KUBEVIRT_SCHEMA_FILES[kind];
  if (!file) throw new Error(`no KubeVirt schema for kind ${kind}`);
  const dir = kubevirtSchemasDir();
  const path = join(dir, file);
  if (!existsSync(path)) throw new KubevirtSchemasMissingError(dir);
  const raw = JSON.parse(readFileSync(path, 'utf8')) as JsonSchema;
  const schema = strictify(raw, formats) as JsonSchema & { properties: Record<string, unknown> };
  schema.properties.metadata = { $ref: `${K8S_SCHEMA_ID}#/definitions/V1ObjectMeta` };
  return schema;
}

const SUBSCHEMA_LISTS = ['anyOf', 'allOf', 'oneOf'] as const;

/**
 * Structural-schema semantics as `kubectl apply --validate=strict` sees them:
 * an object schema without `x-kubernetes-preserve-unknown-fields` and without
 * `additionalProperties` is closed (unknown fields are errors);
 * `x-kubernetes-int-or-string` takes an integer or a string; `nullable` lets
 * `null` through. CEL rules (`x-kubernetes-validations`) are not evaluated.
 */
function strictify(node: unknown, formats: Set<string>): unknown {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return node;
  const src = node as Record<string, unknown>;
  const preserve = src['x-kubernetes-preserve-unknown-fields'] === true;
  const intOrString = src['x-kubernetes-int-or-string'] === true;
  const nullable = src.nullable === true;
  const s: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) {
    if (
      k.startsWith('x-kubernetes-') ||
      ['description', 'nullable', 'default', 'example'].includes(k)
    )
      continue;
    s[k] = v;
  }
  if (typeof s.format === 'string') formats.add(s.format);
  if (s.properties && typeof s.properties === 'object') {
    s.properties = Object.fromEntries(
      Object.entries(s.properties as Record<string, unknown>).map(([k, v]) => [
        k,
        strictify(v, formats),
      ]),
    );
  }
  if (s.items) s.items = strictify(s.items, formats);
  if (s.additionalProperties && typeof s.additionalProperties === 'object') {
    s.additionalProperties = strictify(s.additionalProperties, formats);
  }
  if (s.not) s.not = strictify(s.not, formats);
  for (const list of SUBSCHEMA_LISTS) {
    if (Array.isArray(s[list])) s[list] = (s[list] as unknown[]).map((x) => strictify(x, formats));
  }
  if (intOrString && !s.anyOf) {
    delete s.type;
    s.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  const isObject = s.type === 'object' || (s.type === undefined && s.properties !== undefined);
  if (isObject && !preserve && s.additionalProperties === undefined) {
    s.additionalProperties = false;
  }
  if (nullable) {
    if (typeof s.type === 'string') s.type = [s.type, 'null'];
    else if (Array.isArray(s.anyOf)) s.anyOf = [...(s.anyOf as unknown[]), { type: 'null' }];
  }
  return s;
}
