import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BUILTIN_KINDS,
  KUBEVIRT_SCHEMA_FILES,
  k8sDefinitions,
  kubevirtSchemasDir,
  type JsonSchema,
} from '../kube/index.js';
import { serves } from './discovery.js';
import type { ResourceType } from './store.js';

/**
 * `/openapi/v2` and `/openapi/v3` built from the schemas the sim validates
 * writes with: @kubernetes/client-node's models for built-in kinds (the
 * source of src/kube's strict schemas) and KubeVirt's CRD schemas from
 * `../shared/schemas/kubevirt`. What kubectl reads from them: the
 * `x-kubernetes-group-version-kind` of each kind's schema (`explain`, patch
 * metadata) and the `fieldValidation` parameter of each PATCH operation
 * (whether to leave validation to the server, as `apply`, `create` and
 * `replace` do by default).
 */

const QUERY_PARAMS = ['dryRun', 'fieldManager', 'fieldValidation', 'pretty'];

interface Kind {
  type: ResourceType;
  /** Definition name (`V1Pod`, `io.kubevirt.v1.VirtualMachine`). */
  definition: string;
}

type Flavor = 'v2' | 'v3';

const refTo = (flavor: Flavor, name: string) =>
  flavor === 'v2' ? `#/definitions/${name}` : `#/components/schemas/${name}`;

/**
 * A client-node-derived schema as OpenAPI expresses it: a single `type`,
 * open objects (OpenAPI documents of Kubernetes never close them), int-or-
 * string and quantities as Kubernetes publishes them.
 */
function toOpenApi(node: unknown, flavor: Flavor): unknown {
  if (Array.isArray(node)) return node.map((n) => toOpenApi(n, flavor));
  if (!node || typeof node !== 'object') return node;
  const src = node as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) {
    if (k === 'additionalProperties' && v === false) continue;
    if (k === '$ref' && typeof v === 'string') {
      out.$ref = refTo(flavor, definitionName(v.split('/').at(-1)!));
      continue;
    }
    if (k === 'type' && Array.isArray(v)) {
      const types = v.filter((t) => t !== 'null') as string[];
      if (types.includes('integer') && types.includes('string')) {
        out.type = 'string';
        out.format = 'int-or-string';
        if (flavor === 'v3') out['x-kubernetes-int-or-string'] = true;
      } else if (types.includes('number') && types.includes('string')) {
        out.type = 'string'; // a resource.Quantity
      } else if (types[0]) out.type = types[0];
      continue;
    }
    out[k] =
      k === 'properties'
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>).map(([p, s]) => [p, toOpenApi(s, flavor)]),
          )
        : toOpenApi(v, flavor);
  }
  return out;
}

/** A CRD schema for OpenAPI v2, which knows no `nullable` nor `anyOf`/`oneOf`/`allOf`/`not`. */
function crdForV2(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(crdForV2);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (['nullable', 'anyOf', 'oneOf', 'allOf', 'not'].includes(k)) continue;
    out[k] =
      k === 'properties'
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>).map(([p, s]) => [p, crdForV2(s)]),
          )
        : crdForV2(v);
  }
  return out;
}

const gvk = (t: ResourceType) => ({ group: t.group, version: t.version, kind: t.kind });

/**
 * A client-node model name as Kubernetes names the definition: `V1Container`
 * → `io.k8s.api.core.v1.Container` (kubectl shows the last segment as the type).
 */
function definitionName(model: string): string {
  const m = /^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(.+)$/.exec(model);
  if (!m) return model;
  return `io.k8s.api.${(m[1] ?? 'core').toLowerCase()}.${m[2]!.toLowerCase()}.${m[3]}`;
}

export class OpenApiDocuments {
  private readonly v3Cache = new Map<string, { body: string; hash: string }>();
  private v2Cache?: string;

  constructor(private readonly resources: readonly ResourceType[]) {}

  /** Group versions as `/openapi/v3` names them (`api/v1`, `apis/kubevirt.io/v1`). */
  private groupVersions(): string[] {
    return [
      ...new Set(
        this.resources.map((r) => (r.group ? `apis/${r.group}/${r.version}` : `api/${r.version}`)),
      ),
    ];
  }

  private kindsOf(gvPath?: string): Kind[] {
    return this.resources
      .filter(
        (r) =>
          gvPath === undefined ||
          (r.group ? `apis/${r.group}/${r.version}` : `api/${r.version}`) === gvPath,
      )
      .flatMap((type): Kind[] => {
        const builtin =
          BUILTIN_KINDS[`${type.group ? `${type.group}/` : ''}${type.version}/${type.kind}`];
        if (builtin) return [{ type, definition: builtin.model }];
        if (type.group === 'kubevirt.io' && KUBEVIRT_SCHEMA_FILES[type.kind])
          return [{ type, definition: `io.kubevirt.${type.version}.${type.kind}` }];
        return [];
      });
  }

  private definitions(kinds: Kind[], flavor: Flavor): Record<string, unknown> {
    const builtins = kinds.filter((k) => !k.definition.startsWith('io.kubevirt.'));
    // Every object schema of a CRD refers to the built-in ObjectMeta.
    const defs = k8sDefinitions([...builtins.map((k) => k.definition), 'V1ObjectMeta']);
    const out: Record<string, unknown> = {};
    for (const [name, schema] of Object.entries(defs))
      out[definitionName(name)] = toOpenApi(schema, flavor);
    for (const k of kinds) {
      if (k.definition.startsWith('io.kubevirt.')) {
        const crd = this.crdSchema(k.type.kind);
        if (!crd) continue;
        const schema = (flavor === 'v2' ? crdForV2(crd) : crd) as JsonSchema & {
          properties?: Record<string, unknown>;
        };
        schema.properties = {
          ...schema.properties,
          metadata: { $ref: refTo(flavor, definitionName('V1ObjectMeta')) },
        };
        out[k.definition] = schema;
      }
      const def = out[definitionName(k.definition)] as Record<string, unknown> | undefined;
      if (def) def['x-kubernetes-group-version-kind'] = [gvk(k.type)];
    }
    return out;
  }

  private crdSchema(kind: string): JsonSchema | undefined {
    const path = join(kubevirtSchemasDir(), KUBEVIRT_SCHEMA_FILES[kind]!);
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as JsonSchema) : undefined;
  }

  private paths(kinds: Kind[], flavor: Flavor): Record<string, unknown> {
    const paths: Record<string, unknown> = {};
    const param = (name: string, where: 'query' | 'path') =>
      flavor === 'v2'
        ? {
            name,
            in: where,
            type: 'string',
            uniqueItems: true,
            ...(where === 'path' ? { required: true } : {}),
          }
        : {
            name,
            in: where,
            schema: { type: 'string', uniqueItems: true },
            ...(where === 'path' ? { required: true } : {}),
          };
    const body = (def: string) =>
      flavor === 'v2'
        ? {
            parameters: [
              { name: 'body', in: 'body', required: true, schema: { $ref: refTo(flavor, def) } },
            ],
          }
        : {
            requestBody: {
              content: { '*/*': { schema: { $ref: refTo(flavor, def) } } },
              required: true,
            },
          };
    const response = (def: string) => ({
      responses: {
        '200':
          flavor === 'v2'
            ? { description: 'OK', schema: { $ref: refTo(flavor, def) } }
            : {
                description: 'OK',
                content: { 'application/json': { schema: { $ref: refTo(flavor, def) } } },
              },
      },
    });
    for (const { type, definition: model } of kinds) {
      const definition = definitionName(model);
      const base = `/${type.group ? `apis/${type.group}` : 'api'}/${type.version}`;
      const scope = type.namespaced ? '/namespaces/{namespace}' : '';
      const collection = `${base}${scope}/${type.plural}`;
      const pathParams = type.namespaced ? [param('namespace', 'path')] : [];
      const op = (action: string, extra: Record<string, unknown>, params: string[]) => ({
        operationId: `${action}${type.kind}`,
        'x-kubernetes-action': action,
        'x-kubernetes-group-version-kind': gvk(type),
        ...extra,
        parameters: [
          ...((extra.parameters as unknown[]) ?? []),
          ...params.map((p) => param(p, 'query')),
        ],
      });
      paths[collection] = {
        parameters: pathParams,
        get: op('list', response(definition), [
          'labelSelector',
          'fieldSelector',
          'limit',
          'continue',
          'watch',
        ]),
        post: op('post', { ...body(definition), ...response(definition) }, QUERY_PARAMS),
        ...(serves(type, 'deletecollection')
          ? { delete: op('deletecollection', response(definition), ['labelSelector', 'dryRun']) }
          : {}),
      };
      paths[`${collection}/{name}`] = {
        parameters: [...pathParams, param('name', 'path')],
        get: op('get', response(definition), ['pretty']),
        put: op('put', { ...body(definition), ...response(definition) }, QUERY_PARAMS),
        patch: op('patch', { ...body(definition), ...response(definition) }, [
          ...QUERY_PARAMS,
          'force',
        ]),
        delete: op('delete', response(definition), [
          'dryRun',
          'gracePeriodSeconds',
          'propagationPolicy',
        ]),
      };
    }
    return paths;
  }

  /** `/openapi/v2` (Swagger 2.0), every served kind. */
  v2(): string {
    const kinds = this.kindsOf();
    this.v2Cache ??= JSON.stringify({
      swagger: '2.0',
      info: { title: 'Kubernetes', version: 'v1' },
      paths: this.paths(kinds, 'v2'),
      definitions: this.definitions(kinds, 'v2'),
    });
    return this.v2Cache;
  }

  /** One group version's OpenAPI 3.0 document, or undefined when none is served. */
  v3(gvPath: string): { body: string; hash: string } | undefined {
    const cached = this.v3Cache.get(gvPath);
    if (cached) return cached;
    if (!this.groupVersions().includes(gvPath)) return undefined;
    const kinds = this.kindsOf(gvPath);
    const body = JSON.stringify({
      openapi: '3.0.0',
      info: { title: 'Kubernetes', version: 'v1' },
      paths: this.paths(kinds, 'v3'),
      components: { schemas: this.definitions(kinds, 'v3') },
    });
    const doc = { body, hash: createHash('sha512').update(body).digest('hex').toUpperCase() };
    this.v3Cache.set(gvPath, doc);
    return doc;
  }

  /** `/openapi/v3`: where each group version's document is, with its hash. */
  v3Index(): string {
    const paths: Record<string, unknown> = {};
    for (const gv of this.groupVersions()) {
      const doc = this.v3(gv);
      if (doc) paths[gv] = { serverRelativeURL: `/openapi/v3/${gv}?hash=${doc.hash}` };
    }
    return JSON.stringify({ paths });
  }
}
