import {
  KUBEVIRT_SCHEMA_FILES,
  KubevirtSchemasMissingError,
  kubevirtSchemasPresent,
  validateObject,
  type SchemaProblem,
} from '../kube/index.js';
import { ApiError, type Obj, type ResourceType } from './store.js';

/** `?fieldValidation=` as the API server reads it (default `Warn` since Kubernetes 1.27). */
export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export function fieldValidationOf(
  value: string | null,
  optionsKind = 'CreateOptions',
): FieldValidation {
  if (value === null || value === '') return 'Warn';
  if (value === 'Strict' || value === 'Warn' || value === 'Ignore') return value;
  throw unsupportedOption(optionsKind, 'fieldValidation', value, ['Ignore', 'Strict', 'Warn']);
}

/**
 * A request option with a value the API server does not know: its options
 * validation answers 422 Invalid on `CreateOptions.meta.k8s.io` (or
 * Update/Patch/DeleteOptions) with one `FieldValueNotSupported` cause.
 */
export function unsupportedOption(
  optionsKind: string,
  field: string,
  value: string,
  supported: string[],
): ApiError {
  const message = `Unsupported value: ${JSON.stringify(value)}: supported values: ${supported
    .map((v) => JSON.stringify(v))
    .join(', ')}`;
  return new ApiError(
    422,
    'Invalid',
    `${optionsKind}.meta.k8s.io "" is invalid: ${field}: ${message}`,
    {
      group: 'meta.k8s.io',
      kind: optionsKind,
      causes: [{ reason: 'FieldValueNotSupported', message, field }],
    },
  );
}

/**
 * The API server's decode-and-validate step for writes from clients:
 * unknown fields are pruned (Warn: with a `Warning` header; Strict: 400
 * "strict decoding error"), then the object is validated against its schema
 * (Kubernetes' OpenAPI for built-in kinds, KubeVirt's CRD schemas for
 * kubevirt.io) and refused with 422 Invalid listing every cause.
 *
 * Only what the client wrote is judged: on a write to the main resource of a
 * kind with a status subresource the server-owned `status` is left out (the
 * sim's controllers write it directly); otherwise the whole object is.
 */
export class WriteValidator {
  /** False when KubeVirt's schemas are not beside the project: KubeVirt kinds then go unchecked. */
  readonly kubevirtChecked: boolean;

  constructor(readonly enabled = true) {
    this.kubevirtChecked = enabled && kubevirtSchemasPresent();
  }

  /** Mutates `obj` (prunes unknown fields); returns warnings for the `Warning` header. */
  admit(type: ResourceType, obj: Obj, mode: FieldValidation, subresource?: string): string[] {
    if (!this.enabled) return [];
    if (type.group === 'kubevirt.io' && !this.kubevirtChecked) return [];
    // KubeVirt's own install resource has no schema beside the project: unchecked.
    if (type.group === 'kubevirt.io' && !KUBEVIRT_SCHEMA_FILES[type.kind]) return [];
    // Without a status subresource the client owns status like any field.
    const judged: Obj = subresource === 'status' || !type.status ? obj : withoutStatus(obj);
    let problems: SchemaProblem[];
    try {
      problems = validateObject(judged);
    } catch (err) {
      if (err instanceof KubevirtSchemasMissingError) return [];
      throw err;
    }
    const unknown = problems.filter((p) => p.unknownField !== undefined);
    const invalid = problems.filter((p) => p.unknownField === undefined);
    const warnings: string[] = [];
    if (unknown.length > 0) {
      if (mode === 'Strict') {
        throw new ApiError(
          400,
          'BadRequest',
          `${type.kind} in version "${type.version}" cannot be handled as a ${type.kind}: strict decoding error: ${unknown
            .map((p) => `unknown field "${p.path}"`)
            .join(', ')}`,
        );
      }
      // Deepest first, so removing one never shifts another's path.
      for (const p of [...unknown].sort((a, b) => b.unknownField!.length - a.unknownField!.length))
        removePointer(obj, p.unknownField!);
      if (mode === 'Warn') for (const p of unknown) warnings.push(`unknown field "${p.path}"`);
    }
    if (invalid.length > 0) throw invalidError(type, obj, invalid);
    return warnings;
  }
}

function causeReason(message: string): string {
  if (message.startsWith('Required value')) return 'FieldValueRequired';
  if (message.startsWith('Unsupported value')) return 'FieldValueNotSupported';
  if (message.startsWith('Invalid type')) return 'FieldValueTypeInvalid';
  if (message.startsWith('Duplicate value')) return 'FieldValueDuplicate';
  return 'FieldValueInvalid';
}

/** apimachinery's `NewInvalid`: one message naming every field, and one cause per field. */
export function invalidError(type: ResourceType, obj: Obj, problems: SchemaProblem[]): ApiError {
  const qualifiedKind = type.group ? `${type.kind}.${type.group}` : type.kind;
  const name = obj.metadata?.name ?? obj.metadata?.generateName ?? '';
  const each = problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message));
  const summary = each.length === 1 ? each[0]! : `[${each.join(', ')}]`;
  return new ApiError(422, 'Invalid', `${qualifiedKind} "${name}" is invalid: ${summary}`, {
    name,
    group: type.group,
    kind: type.kind,
    causes: problems.map((p) => ({
      reason: causeReason(p.message),
      message: p.message,
      // apimachinery names the whole map for a bad label or annotation key or value.
      field: p.path.replace(
        /^((?:spec\.template\.)?metadata\.(?:labels|annotations))[.[].*$/,
        '$1',
      ),
    })),
  });
}

function removePointer(root: unknown, pointer: string): void {
  const segments = pointer
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let node: unknown = root;
  for (const seg of segments.slice(0, -1)) {
    if (!node || typeof node !== 'object') return;
    node = (node as Record<string, unknown>)[seg];
  }
  if (node && typeof node === 'object' && !Array.isArray(node))
    delete (node as Record<string, unknown>)[segments.at(-1)!];
}

/** A shallow copy without `status`: nested objects are shared, so pruning it prunes `obj`. */
function withoutStatus(obj: Obj): Obj {
  const copy = { ...obj };
  delete copy.status;
  return copy;
}
