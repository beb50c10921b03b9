import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { ObjectStore } from './store.js';
import { ApiError, type ChangeEvent, type Obj, type ResourceType } from './store.js';
import { fieldValidationOf, WriteValidator, type FieldValidation } from './validation.js';
import { assertStrategicMergePatchable, strategicMergePatch } from './strategic-merge.js';

/** Admission and lifecycle hooks that the cluster emulation plugs in. */
export interface Admission {
  /** Before a create is stored: may mutate, or throw ApiError to refuse. */
  beforeCreate?(resource: ResourceType, obj: Obj): void;
  beforeUpdate?(resource: ResourceType, obj: Obj, old: Obj): void;
  /** Instead of the default deletion (namespaces: Terminating). Return true when handled. */
  onDelete?(resource: ResourceType, obj: Obj): boolean;
  /** PUT on a subresource the sim emulates (KubeVirt start/stop/restart). */
  subresource?(resource: ResourceType, namespace: string, name: string, sub: string): void;
  /** Applies fault settings from the admin endpoint and returns them all. */
  setFaults?(changes: Record<string, unknown>): Record<string, unknown>;
}

export interface FaultState {
  /** Share of requests (0..1) answered with `errorCode`. */
  errorRate: number;
  errorCode: 500 | 429;
  latencyMs: number;
}

export function statusBody(err: ApiError): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: err.message,
    reason: err.reason,
    ...(err.details ? { details: err.details } : {}),
    code: err.code,
  };
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** What a write needs from its request: how to treat unknown fields, where warnings go. */
interface WriteContext {
  fieldValidation: FieldValidation;
  warn(messages: string[]): void;
}

interface Route {
  type: ResourceType;
  namespace?: string;
  name?: string;
  sub?: string;
}

/**
 * Who may call: throws ApiError 401 (bad credentials) or 403 (anonymous)
 * to refuse. A string is a bearer token.
 */
export type Authenticator = string | ((req: IncomingMessage, path: string) => void);

export interface KubeApiOptions {
  validator?: WriteValidator;
  /** Kubernetes minor version `/version` reports, e.g. `1.30`. */
  kubernetesVersion?: string;
  /** Serve the sim's `/sim/faults` admin endpoint (the host sim only). */
  adminEndpoint?: boolean;
}

/** The Kubernetes REST surface of the sim over one ObjectStore. */
export class KubeApi {
  readonly faults: FaultState = { errorRate: 0, errorCode: 500, latencyMs: 0 };
  private readonly watches = new Set<ServerResponse>();
  private readonly validator: WriteValidator;
  private readonly kubernetesVersion: string;
  private readonly kubevirt: boolean;

  constructor(
    readonly store: ObjectStore,
    private readonly auth: Authenticator,
    private readonly admission: Admission = {},
    private readonly options: KubeApiOptions = {},
  ) {
    this.validator = options.validator ?? new WriteValidator();
    this.kubernetesVersion = options.kubernetesVersion ?? '1.30';
    this.kubevirt = store.resources.some((r) => r.group === 'kubevirt.io');
  }

  private authenticate(req: IncomingMessage, path: string): void {
    if (typeof this.auth === 'function') return this.auth(req, path);
    if (req.headers.authorization !== `Bearer ${this.auth}`) {
      throw new ApiError(401, 'Unauthorized', 'Unauthorized');
    }
  }

  dropWatches(): void {
    for (const w of this.watches) w.destroy();
    this.watches.clear();
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'https://sim');
      this.authenticate(req, url.pathname);
      // The sim's own admin endpoint (same token): faults for tests and demos
      // driven from another process. Never affected by the faults it sets.
      if (this.options.adminEndpoint !== false && url.pathname.startsWith('/sim/faults'))
        return await this.adminFaults(req, res);
      if (this.faults.latencyMs > 0) await new Promise((r) => setTimeout(r, this.faults.latencyMs));
      if (this.faults.errorRate > 0 && Math.random() < this.faults.errorRate) {
        if (this.faults.errorCode === 429) res.setHeader('retry-after', '1');
        throw new ApiError(
          this.faults.errorCode,
          this.faults.errorCode === 429 ? 'TooManyRequests' : 'InternalError',
          'injected fault',
        );
      }
      if (this.discovery(url.pathname, res)) return;
      const route = this.route(url.pathname);
      const q = url.searchParams;
      const write: WriteContext = {
        fieldValidation: fieldValidationOf(q.get('fieldValidation')),
        warn: (messages) => {
          // The API server's `Warning` header (RFC 7234 code 299), one per message.
          if (messages.length > 0 && !res.headersSent)
            res.setHeader(
              'warning',
              messages.map((m) => `299 - ${JSON.stringify(m)}`),
            );
        },
      };
      switch (req.method) {
        case 'GET':
          if (route.name) return send(res, 200, this.get(route));
          if (q.get('watch') === 'true' || q.get('watch') === '1')
            return this.watch(route, q, req, res);
          return send(res, 200, this.list(route, q));
        case 'POST':
          return send(res, 201, this.create(route, parseBody(await readBody(req), req), write));
        case 'PUT':
          if (route.sub && route.type.group === 'subresources.kubevirt.io') {
            this.admission.subresource?.(route.type, route.namespace!, route.name!, route.sub);
            res.writeHead(202);
            return void res.end();
          }
          return send(res, 200, this.replace(route, parseBody(await readBody(req), req), write));
        case 'PATCH':
          return send(
            res,
            200,
            this.patch(route, await readBody(req), req.headers['content-type'] ?? '', q, write),
          );
        case 'DELETE':
          if (!route.name) return send(res, 200, this.deleteCollection(route, q));
          return send(res, 200, this.delete(route));
        default:
          throw new ApiError(
            405,
            'MethodNotAllowed',
            `the server does not allow this method on the requested resource`,
          );
      }
    } catch (err) {
      const e =
        err instanceof ApiError ? err : new ApiError(500, 'InternalError', (err as Error).message);
      if (!res.headersSent) send(res, e.code, statusBody(e));
      else res.end();
    }
  }

  private async adminFaults(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'POST') {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse((await readBody(req)) || '{}') as Record<string, unknown>;
      } catch {
        throw new ApiError(400, 'BadRequest', 'faults must be a JSON object');
      }
      this.admission.setFaults?.(body);
    } else if (req.method !== 'GET') {
      throw new ApiError(405, 'MethodNotAllowed', 'GET or POST /sim/faults');
    }
    send(res, 200, this.admission.setFaults?.({}) ?? this.faults);
  }

  private discovery(path: string, res: ServerResponse): boolean {
    const groups = [
      ...new Set(this.store.resources.filter((r) => r.group).map((r) => r.group)),
      ...(this.kubevirt ? ['subresources.kubevirt.io'] : []),
    ];
    const resourceList = (group: string, version: string) => ({
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group ? `${group}/${version}` : version,
      resources: this.store.resources
        .filter((r) => r.group === group && r.version === version)
        .flatMap((r) => [
          {
            name: r.plural,
            singularName: r.kind.toLowerCase(),
            namespaced: r.namespaced,
            kind: r.kind,
            verbs: [
              'create',
              'delete',
              'deletecollection',
              'get',
              'list',
              'patch',
              'update',
              'watch',
            ],
          },
          ...(r.status
            ? [
                {
                  name: `${r.plural}/status`,
                  singularName: '',
                  namespaced: r.namespaced,
                  kind: r.kind,
                  verbs: ['get', 'patch', 'update'],
                },
              ]
            : []),
        ]),
    });
    if (path === '/version') {
      send(res, 200, {
        major: '1',
        minor: this.kubernetesVersion.split('.')[1] ?? '30',
        gitVersion: `v${this.kubernetesVersion}.0-labvirt-sim`,
        platform: 'linux/amd64',
      });
      return true;
    }
    if (path === '/healthz' || path === '/readyz' || path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('ok');
      return true;
    }
    if (path === '/api') {
      send(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
      return true;
    }
    if (path === '/api/v1') {
      send(res, 200, resourceList('', 'v1'));
      return true;
    }
    if (path === '/apis') {
      send(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: groups.map((g) => ({
          name: g,
          versions: [{ groupVersion: `${g}/v1`, version: 'v1' }],
          preferredVersion: { groupVersion: `${g}/v1`, version: 'v1' },
        })),
      });
      return true;
    }
    const m = /^\/apis\/([^/]+)\/(v1)$/.exec(path);
    if (m) {
      if (m[1] === 'subresources.kubevirt.io') {
        send(res, 200, {
          kind: 'APIResourceList',
          apiVersion: 'v1',
          groupVersion: 'subresources.kubevirt.io/v1',
          resources: ['start', 'stop', 'restart'].map((s) => ({
            name: `virtualmachines/${s}`,
            singularName: '',
            namespaced: true,
            kind: 'VirtualMachine',
            verbs: ['update'],
          })),
        });
      } else if (groups.includes(m[1]!)) {
        send(res, 200, resourceList(m[1]!, 'v1'));
      } else return false;
      return true;
    }
    return false;
  }

  private route(path: string): Route {
    const parts = path.split('/').filter(Boolean);
    let group = '';
    let rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
    else if (parts[0] === 'apis' && parts.length >= 3) {
      group = parts[1]!;
      rest = parts.slice(3);
    } else throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, sub] = rest;
    if (
      this.kubevirt &&
      group === 'subresources.kubevirt.io' &&
      plural === 'virtualmachines' &&
      name &&
      sub
    ) {
      return {
        type: { group, version: 'v1', plural, kind: 'VirtualMachine', namespaced: true },
        namespace,
        name,
        sub,
      };
    }
    const type = this.store.resources.find((r) => r.group === group && r.plural === plural);
    if (!type)
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    if (!type.namespaced && namespace) {
      // /api/v1/namespaces/{name}[/status] addresses the Namespace itself.
    }
    if (type.plural === 'namespaces' && rest.length === 1 && namespace) {
      return { type, name: namespace };
    }
    if (sub && (sub !== 'status' || !type.status))
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    return { type, namespace: type.namespaced ? namespace : undefined, name, sub };
  }

  private notFound(type: ResourceType, name: string): ApiError {
    return new ApiError(
      404,
      'NotFound',
      `${type.plural}${type.group ? '.' + type.group : ''} "${name}" not found`,
      {
        name,
        group: type.group,
        kind: type.plural,
      },
    );
  }

  private get(route: Route): Obj {
    const o = this.store.get(route.type.plural, route.namespace, route.name!);
    if (!o) throw this.notFound(route.type, route.name!);
    return withTypeMeta(route.type, o);
  }

  private list(route: Route, q: URLSearchParams): Record<string, unknown> {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined, route.type);
    let items = this.store
      .list(route.type.plural, route.namespace)
      .filter((o) => labels(o.metadata.labels ?? {}) && fields(o))
      .sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
    const limit = Number(q.get('limit') ?? 0);
    const cont = q.get('continue');
    let listRv = String(this.store.resourceVersion);
    if (cont) {
      let token: { rv: string; after: string };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as {
          rv: string;
          after: string;
        };
      } catch {
        throw new ApiError(400, 'BadRequest', 'continue key is not valid');
      }
      if (Number(token.rv) < this.store.oldestWatchable) {
        throw new ApiError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      listRv = token.rv;
      items = items.filter((o) => keyOf(o) > token.after);
    }
    let next: string | undefined;
    if (limit > 0 && items.length > limit) {
      items = items.slice(0, limit);
      next = Buffer.from(
        JSON.stringify({ rv: listRv, after: keyOf(items[items.length - 1]!) }),
      ).toString('base64url');
    }
    return {
      kind: `${route.type.kind}List`,
      apiVersion: route.type.group ? `${route.type.group}/${route.type.version}` : 'v1',
      metadata: { resourceVersion: listRv, ...(next ? { continue: next } : {}) },
      items: items.map((o) => withTypeMeta(route.type, structuredClone(o))),
    };
  }

  private create(route: Route, body: Obj, write: WriteContext): Obj {
    if (!isObject(body) || !isObject(body.metadata)) {
      throw new ApiError(400, 'BadRequest', 'the body of the request was in an unknown format');
    }
    if (route.type.namespaced) {
      if (body.metadata.namespace && body.metadata.namespace !== route.namespace) {
        throw new ApiError(
          400,
          'BadRequest',
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      }
      body.metadata.namespace = route.namespace;
    }
    const expectedApiVersion = route.type.group
      ? `${route.type.group}/${route.type.version}`
      : 'v1';
    body.apiVersion ??= expectedApiVersion;
    body.kind ??= route.type.kind;
    write.warn(this.validator.admit(route.type, body, write.fieldValidation));
    this.admission.beforeCreate?.(route.type, body);
    return withTypeMeta(route.type, this.store.create(route.type.plural, body));
  }

  private replace(route: Route, body: Obj, write: WriteContext): Obj {
    const old = this.store.get(route.type.plural, route.namespace, route.name!);
    if (!old) throw this.notFound(route.type, route.name!);
    const next = structuredClone(body);
    next.metadata = { ...next.metadata, namespace: route.namespace, name: route.name };
    if (route.sub === 'status') {
      // The status subresource changes only status; the main resource never changes status.
      const merged = { ...old, status: next.status };
      return this.commit(route, merged, old, write, next.metadata.resourceVersion);
    }
    if (route.type.status) {
      if ('status' in old) next.status = old.status;
      else delete next.status;
    }
    return this.commit(route, next, old, write, next.metadata.resourceVersion);
  }

  private patch(
    route: Route,
    text: string,
    contentType: string,
    q: URLSearchParams,
    write: WriteContext,
  ): Obj {
    const strategic = contentType.startsWith('application/strategic-merge-patch+json');
    // Checked before the body and the object, as the real server does for custom resources.
    if (strategic) assertStrategicMergePatchable(route.type.kind);
    const old = this.store.get(route.type.plural, route.namespace, route.name!);
    let patch: unknown;
    try {
      patch = contentType.startsWith('application/apply-patch')
        ? parseYaml(text)
        : JSON.parse(text);
    } catch {
      throw new ApiError(400, 'BadRequest', 'the body of the request was in an unknown format');
    }
    if (contentType.startsWith('application/json-patch+json')) {
      throw new ApiError(
        415,
        'UnsupportedMediaType',
        'the sim supports merge, strategic merge and apply patches',
      );
    }
    if (!old) {
      if (contentType.startsWith('application/apply-patch')) {
        // Server-side apply creates what does not exist yet.
        if (!q.get('fieldManager'))
          throw new ApiError(
            422,
            'Invalid',
            'fieldManager: Required value: is required for apply patch',
          );
        return this.create({ ...route, name: undefined }, patch as Obj, write);
      }
      throw this.notFound(route.type, route.name!);
    }
    const merged = (
      strategic ? strategicMergePatch(route.type.kind, old, patch) : mergePatch(old, patch)
    ) as Obj;
    merged.metadata = {
      ...merged.metadata,
      name: old.metadata.name,
      namespace: old.metadata.namespace,
    };
    if (route.sub !== 'status' && route.type.status && 'status' in old) merged.status = old.status;
    if (route.sub === 'status') {
      const statusOnly = { ...old, status: merged.status };
      return this.commit(route, statusOnly, old, write, (patch as Obj).metadata?.resourceVersion);
    }
    return this.commit(route, merged, old, write, (patch as Obj)?.metadata?.resourceVersion);
  }

  private commit(route: Route, next: Obj, old: Obj, write: WriteContext, expectedRv?: string): Obj {
    next.apiVersion ??= old.apiVersion;
    next.kind ??= old.kind;
    write.warn(this.validator.admit(route.type, next, write.fieldValidation, route.sub));
    this.admission.beforeUpdate?.(route.type, next, old);
    const specChanged = JSON.stringify(next.spec) !== JSON.stringify(old.spec);
    return withTypeMeta(
      route.type,
      this.store.update(route.type.plural, next, { expectedRv, specChanged }),
    );
  }

  private delete(route: Route): Obj | Record<string, unknown> {
    const cur = this.store.get(route.type.plural, route.namespace, route.name!);
    if (!cur) throw this.notFound(route.type, route.name!);
    if (this.admission.onDelete?.(route.type, cur)) {
      return withTypeMeta(
        route.type,
        this.store.get(route.type.plural, route.namespace, route.name!) ?? cur,
      );
    }
    const gone = this.store.remove(route.type.plural, route.namespace, route.name!);
    if (gone?.metadata.deletionTimestamp) return withTypeMeta(route.type, gone);
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: { name: route.name, kind: route.type.plural, uid: cur.metadata.uid },
    };
  }

  private deleteCollection(route: Route, q: URLSearchParams): Record<string, unknown> {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    for (const o of this.store.list(route.type.plural, route.namespace)) {
      if (!labels(o.metadata.labels ?? {})) continue;
      if (this.admission.onDelete?.(route.type, o)) continue;
      this.store.remove(route.type.plural, o.metadata.namespace, o.metadata.name!);
    }
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success' };
  }

  private watch(route: Route, q: URLSearchParams, req: IncomingMessage, res: ServerResponse): void {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined, route.type);
    const bookmarks = q.get('allowWatchBookmarks') === 'true';
    const sinceRaw = q.get('resourceVersion');
    const since = sinceRaw && sinceRaw !== '0' ? Number(sinceRaw) : undefined;
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const write = (type: string, object: unknown) =>
      res.write(JSON.stringify({ type, object }) + '\n');
    const matches = (e: ChangeEvent) =>
      e.resource === route.type.plural &&
      (route.namespace === undefined || e.object.metadata.namespace === route.namespace) &&
      labels(e.object.metadata.labels ?? {}) &&
      fields(e.object);
    if (since !== undefined && since < this.store.oldestWatchable - 1) {
      write(
        'ERROR',
        statusBody(
          new ApiError(
            410,
            'Expired',
            `too old resource version: ${since} (${this.store.oldestWatchable})`,
          ),
        ),
      );
      res.end();
      return;
    }
    const bookmarkObject = (initialEventsEnd: boolean) => ({
      kind: route.type.kind,
      apiVersion: route.type.group ? `${route.type.group}/v1` : 'v1',
      metadata: {
        resourceVersion: String(this.store.resourceVersion),
        ...(initialEventsEnd ? { annotations: { 'k8s.io/initial-events-end': 'true' } } : {}),
      },
    });
    // A watch-list (sendInitialEvents) gets the current state first whatever its resourceVersion.
    const initialEvents = q.get('sendInitialEvents') === 'true';
    if (since === undefined || initialEvents) {
      // No resourceVersion: synthetic ADDED for everything, then changes.
      for (const o of this.store.list(route.type.plural, route.namespace)) {
        if (labels(o.metadata.labels ?? {}) && fields(o))
          write('ADDED', withTypeMeta(route.type, structuredClone(o)));
      }
      // Only a watch-list is told, with the annotated bookmark, where the initial state ends.
      if (initialEvents && bookmarks) write('BOOKMARK', bookmarkObject(true));
    } else {
      for (const e of this.store.history)
        if (e.rv > since && matches(e)) write(e.type, withTypeMeta(route.type, e.object));
    }
    this.watches.add(res);
    const unsubscribe = this.store.onChange((e) => {
      if (matches(e)) write(e.type, withTypeMeta(route.type, e.object));
    });
    const bookmark = bookmarks
      ? setInterval(() => {
          write('BOOKMARK', bookmarkObject(false));
        }, 1000)
      : undefined;
    const timeout = setTimeout(() => res.end(), Number(q.get('timeoutSeconds') ?? 1800) * 1000);
    const done = () => {
      unsubscribe();
      if (bookmark) clearInterval(bookmark);
      clearTimeout(timeout);
      this.watches.delete(res);
    };
    req.on('close', done);
    res.on('close', done);
  }
}

function keyOf(o: Obj): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;
}

function withTypeMeta(type: ResourceType, o: Obj): Obj {
  o.apiVersion = type.group ? `${type.group}/${type.version}` : 'v1';
  o.kind = type.kind;
  return o;
}

function parseBody(text: string, req: IncomingMessage): Obj {
  try {
    return (req.headers['content-type'] ?? '').includes('yaml')
      ? (parseYaml(text) as Obj)
      : (JSON.parse(text) as Obj);
  } catch {
    throw new ApiError(400, 'BadRequest', 'the body of the request was in an unknown format');
  }
}
