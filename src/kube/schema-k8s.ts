import * as clientNode from './client-node.js';

/**
 * Strict structural JSON Schemas for Kubernetes' built-in kinds, built from
 * @kubernetes/client-node's generated models (every model lists its fields,
 * their JSON names and types). kubernetes-models' compiled validators check
 * required fields, enums and formats but accept unknown fields; these schemas
 * add what `kubectl apply --validate=strict` adds: every object schema is
 * closed (`additionalProperties: false`), so a misspelt field is an error.
 */
interface Attribute {
  baseName: string;
  type: string;
  format: string;
}
interface Model {
  getAttributeTypeMap?: () => Attribute[];
}

export type JsonSchema = Record<string, unknown>;

const MODELS = clientNode as unknown as Record<string, Model | undefined>;

// Maps whose values are resource quantities: the API server takes numbers too.
const QUANTITY_MAPS = new Set([
  'hard',
  'used',
  'limits',
  'requests',
  'default',
  'defaultRequest',
  'max',
  'min',
  'maxLimitRequestRatio',
  'capacity',
  'allocatable',
  'overhead',
]);
// Their syntax is checked by kubernetes-models' `quantity` format.
const QUANTITY: JsonSchema = { type: ['string', 'number'] };

/** `$id` of the schema holding every definition (refs: `k8s#/definitions/V1Pod`). */
export const K8S_SCHEMA_ID = 'k8s';

/**
 * JSON Schema definitions for `roots` and every model they reach, keyed by
 * client-node's model name (`V1Pod`, `V1ObjectMeta`, ...).
 */
export function k8sDefinitions(roots: string[]): Record<string, JsonSchema> {
  const defs: Record<string, JsonSchema> = {};
  const visit = (name: string): void => {
    if (defs[name]) return;
    const attrs = MODELS[name]?.getAttributeTypeMap?.();
    if (!attrs) throw new Error(`@kubernetes/client-node has no model ${name}`);
    const properties: Record<string, JsonSchema> = {};
    defs[name] = { type: 'object', properties, additionalProperties: false };
    for (const a of attrs) properties[a.baseName] = typeSchema(a.type, a.format, a.baseName, visit);
  };
  for (const r of roots) visit(r);
  return defs;
}

function typeSchema(
  type: string,
  format: string,
  field: string,
  visit: (model: string) => void,
): JsonSchema {
  // The API server reads `null` as "not set"; only leaves are allowed null
  // (kubectl writes `creationTimestamp: null`), structures must be structures.
  switch (type) {
    case 'string':
      // `byte` (base64) and other formats are checked by kubernetes-models.
      return { type: ['string', 'null'] };
    case 'number':
      return { type: [format.startsWith('int') ? 'integer' : 'number', 'null'] };
    case 'boolean':
      return { type: ['boolean', 'null'] };
    case 'Date':
    case 'V1MicroTime':
      return { type: ['string', 'null'] };
    case 'IntOrString':
      return { type: ['integer', 'string', 'null'] };
    case 'any':
      return {};
  }
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return { type: 'array', items: typeSchema(array[1]!, format, field, visit) };
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    const values =
      map[1] === 'string' && QUANTITY_MAPS.has(field)
        ? QUANTITY
        : typeSchema(map[1]!, format, field, visit);
    return { type: 'object', additionalProperties: values };
  }
  visit(type);
  return { $ref: `${K8S_SCHEMA_ID}#/definitions/${type}` };
}
