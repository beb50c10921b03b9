import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { ObjectStore } from './store.js';
import { ApiError, type ChangeEvent, type Obj, type ResourceType } from './store.js';
import {
  fieldValidationOf,
  unsupportedOption,
  WriteValidator,
  type FieldValidation,
} from './validation.js';
import { assertStrategicMergePatchable, strategicMergePatch } from './strategic-merge.js';
import {
  aggregatedDiscovery,
  aggregatedVersionAccepted,
  resourceList,
  serves,
  type ServedGroup,
} from './discovery.js';
import { includeObjectOf, toTable, wantsTable } from './tables.js';
import { OpenApiDocuments } from './openapi.js';
import { jsonPatch } from './json-patch.js';
import { impersonate } from './impersonation.js';
import { decodeProtobuf, PROTOBUF } from './protobuf.js';

/** Admission and lifecycle hooks that the cluster emulation plugs in. */
export interface Admission {
  /**
   * Before a create is stored: may mutate, or throw ApiError to refuse. A
   * dry run is admitted the same way but must reserve nothing (ports, IPs).
   */
  beforeCreate?(resource: ResourceType, obj: Obj, write: { dryRun: boolean }): void;
  beforeUpdate?(resource: ResourceType, obj: Obj, old: Obj, write: { dryRun: boolean }): void;
  /**
   * Instead of the default deletion (namespaces: Terminating). Returns the
   * object as the deletion leaves it when handled; with `dryRun`, changes nothing.
   */
  onDelete?(resource: ResourceType, obj: Obj, write: { dryRun: boolean }): Obj | undefined;
  /** Text of `GET pods/<name>/log` (launcher pods: the guest's console). */
  podLog?(namespace: string, pod: Obj, container: string | undefined): string | undefined;
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
  /**
   * A DELETE is carried out at once and its answer leaves this much later:
   * a slow way back, over which a watch can tell of the deletion first.
   */
  deleteAnswerDelayMs: number;
}

/** The API's faults, all off (the start, and a reset). */
export function noApiFaults(): FaultState {
  return { errorRate: 0, errorCode: 500, latencyMs: 0, deleteAnswerDelayMs: 0 };
}

/** Who a request comes from, as authentication found it. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
}

/** What authorization judges: apiserver's `authorizer.Attributes`. */
export interface RequestAttributes {
  user: UserInfo;
  verb: string;
  resourceRequest: boolean;
  /** The URL path (what non-resource rules match). */
  path: string;
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

/** RBAC for the host sim: token authentication beyond the admin's, authorization, reviews, tokens. */
export interface AccessControl {
  /** Who a bearer token belongs to, or undefined when it is no known token. */
  userOfToken(token: string): UserInfo | undefined;
  /** Empty string when allowed; otherwise the denial's reason (may be ''). */
  authorize(attrs: RequestAttributes): { allowed: boolean; reason: string };
  /** `SelfSubjectRulesReview`: what `user` may do in `namespace`. */
  rulesFor(user: UserInfo, namespace: string): Record<string, unknown>;
  /** `TokenRequest` for a ServiceAccount that exists. */
  issueToken(
    serviceAccount: Obj,
    spec: { audiences?: string[]; expirationSeconds?: number },
  ): { token: string; expirationTimestamp: string };
}

/** The identity a function authenticator returns when it does not name one: all-powerful. */
export const CLUSTER_ADMIN: UserInfo = {
  username: 'sim-admin',
  groups: ['system:masters', 'system:authenticated'],
};

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

function send(
  res: ServerResponse,
  code: number,
  body: unknown,
  contentType = 'application/json',
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
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

/** What a write needs from its request: how to treat unknown fields, where warnings go, dry run. */
interface WriteContext {
  fieldValidation: FieldValidation;
  dryRun: boolean;
  warn(messages: string[]): void;
}

interface Route {
  type: ResourceType;
  namespace?: string;
  name?: string;
  sub?: string;
}

/**
 * Who may call: a bearer token (the all-powerful admin's), or a function that
 * returns the caller (undefined: the all-powerful admin) or throws ApiError
 * 401 (bad credentials) or 403 (anonymous) to refuse.
 */
export type Authenticator =
  string | ((req: IncomingMessage, path: string) => UserInfo | undefined | void);

export interface KubeApiOptions {
  validator?: WriteValidator;
  /** Kubernetes minor version `/version` reports, e.g. `1.30`. */
  kubernetesVersion?: string;
  /** Serve the sim's `/sim/faults` admin endpoint (the host sim only). */
  adminEndpoint?: boolean;
  /** RBAC: without it every authenticated caller may do everything. */
  access?: AccessControl;
  /** How often a watch with `allowWatchBookmarks` gets a BOOKMARK (a real server: about a minute). */
  bookmarkIntervalMs?: number;
}

const NOT_FOUND = () =>
  new ApiError(404, 'NotFound', 'the server could not find the requested resource');

/** Review kinds of authorization.k8s.io and authentication.k8s.io: created, answered, never stored. */
const REVIEWS: ResourceType[] = [
  ['authorization.k8s.io', 'selfsubjectaccessreviews', 'SelfSubjectAccessReview', false],
  ['authorization.k8s.io', 'selfsubjectrulesreviews', 'SelfSubjectRulesReview', false],
  ['authorization.k8s.io', 'subjectaccessreviews', 'SubjectAccessReview', false],
  ['authorization.k8s.io', 'localsubjectaccessreviews', 'LocalSubjectAccessReview', true],
  ['authentication.k8s.io', 'selfsubjectreviews', 'SelfSubjectReview', false],
].map(([group, plural, kind, namespaced]) => ({
  group: group as string,
  version: 'v1',
  plural: plural as string,
  kind: kind as string,
  namespaced: namespaced as boolean,
}));

/** The Kubernetes REST surface of the sim over one ObjectStore. */
export class KubeApi {
  readonly faults: FaultState = noApiFaults();
  private readonly watches = new Set<ServerResponse>();
  private readonly validator: WriteValidator;
  private readonly kubernetesVersion: string;
  private readonly kubevirt: boolean;
  private readonly kubernetesMinor: number;
  private readonly openapi: OpenApiDocuments;

  constructor(
    readonly store: ObjectStore,
    private readonly auth: Authenticator,
    private readonly admission: Admission = {},
    private readonly options: KubeApiOptions = {},
  ) {
    this.validator = options.validator ?? new WriteValidator();
    this.kubernetesVersion = options.kubernetesVersion ?? '1.30';
    this.kubevirt = store.resources.some((r) => r.group === 'kubevirt.io');
    this.kubernetesMinor = Number(this.kubernetesVersion.split('.')[1] ?? 30);
    this.openapi = new OpenApiDocuments([...store.resources, ...(options.access ? REVIEWS : [])]);
  }

  private authenticate(req: IncomingMessage, path: string): UserInfo {
    if (typeof this.auth === 'function') return this.auth(req, path) ?? CLUSTER_ADMIN;
    const header = req.headers.authorization ?? '';
    if (header === `Bearer ${this.auth}`) return CLUSTER_ADMIN;
    const user = header.startsWith('Bearer ')
      ? this.options.access?.userOfToken(header.slice('Bearer '.length))
      : undefined;
    if (!user) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
    return user;
  }

  dropWatches(): void {
    for (const w of this.watches) w.destroy();
    this.watches.clear();
  }

  /** 403 unless RBAC allows it (without RBAC everything is allowed). */
  private authorize(attrs: RequestAttributes): void {
    const access = this.options.access;
    if (!access || attrs.user.groups.includes('system:masters')) return;
    const decision = access.authorize(attrs);
    if (decision.allowed) return;
    throw forbidden(attrs, decision.reason);
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'https://sim');
      const user = impersonate(req.headers, this.authenticate(req, url.pathname), (attrs) =>
        this.authorize(attrs),
      );
      // The sim's own admin endpoint (same token): faults for tests and demos
      // driven from another process. Never affected by the faults it sets.
      if (this.options.adminEndpoint !== false && url.pathname.startsWith('/sim/faults')) {
        if (user !== CLUSTER_ADMIN)
          throw new ApiError(403, 'Forbidden', 'only the sim admin sets faults');
        return await this.adminFaults(req, res);
      }
      if (this.faults.latencyMs > 0) await new Promise((r) => setTimeout(r, this.faults.latencyMs));
      if (this.faults.errorRate > 0 && Math.random() < this.faults.errorRate) {
        if (this.faults.errorCode === 429) res.setHeader('retry-after', '1');
        throw new ApiError(
          this.faults.errorCode,
          this.faults.errorCode === 429 ? 'TooManyRequests' : 'InternalError',
          'injected fault',
        );
      }
      const q = url.searchParams;
      const route = this.isResourcePath(url.pathname) ? this.route(url.pathname) : undefined;
      const verb = verbOf(req.method ?? 'GET', route, q);
      this.authorize({
        user,
        verb,
        resourceRequest: route !== undefined,
        path: url.pathname,
        apiGroup: route?.type.group ?? '',
        apiVersion: route?.type.version ?? '',
        resource: route?.type.plural ?? '',
        subresource: route?.sub ?? '',
        namespace: route?.namespace ?? '',
        name: route?.name ?? '',
      });
      if (!route) {
        if (req.method !== 'GET') throw NOT_FOUND();
        if (this.discovery(url.pathname, req, res)) return;
        throw NOT_FOUND();
      }
      if (!serves(route.type, verb) && !route.sub)
        throw new ApiError(
          405,
          'MethodNotAllowed',
          'the server does not allow this method on the requested resource',
        );
      return await this.dispatch(req, res, route, q, user);
    } catch (err) {
      const e =
        err instanceof ApiError ? err : new ApiError(500, 'InternalError', (err as Error).message);
      if (!res.headersSent) send(res, e.code, statusBody(e));
      else res.end();
    }
  }

  private async dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    q: URLSearchParams,
    user: UserInfo,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    const write: WriteContext = {
      fieldValidation: 'Warn',
      dryRun: false,
      warn: (messages) => {
        // The API server's `Warning` header (RFC 7234 code 299), one per message.
        if (messages.length > 0 && !res.headersSent)
          res.setHeader(
            'warning',
            messages.map((m) => `299 - ${JSON.stringify(m)}`),
          );
      },
    };
    if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
      const optionsKind = { POST: 'CreateOptions', PUT: 'UpdateOptions', PATCH: 'PatchOptions' }[
        method
      ];
      write.fieldValidation = fieldValidationOf(q.get('fieldValidation'), optionsKind);
      write.dryRun = dryRunOf(q.getAll('dryRun'), optionsKind);
    }
    if (REVIEWS.includes(route.type)) {
      if (method !== 'POST') throw NOT_FOUND();
      return send(res, 201, this.review(route, parseBody(await readBody(req), req), user));
    }
    if (route.sub === 'log' && route.type.plural === 'pods') {
      const pod = this.store.get('pods', route.namespace, route.name!);
      if (!pod) throw this.notFound(route.type, route.name!);
      const container = q.get('container') ?? undefined;
      const text = this.admission.podLog
        ? this.admission.podLog(route.namespace!, pod, container)
        : '';
      // Undefined: the pod has no such container.
      if (text === undefined)
        throw new ApiError(
          400,
          'BadRequest',
          `container ${container ?? ''} is not valid for pod ${route.name}`,
        );
      return send(res, 200, tailLines(text, q.get('tailLines')), 'text/plain');
    }
    if (route.sub === 'token' && route.type.plural === 'serviceaccounts') {
      return send(res, 201, this.tokenRequest(route, parseBody(await readBody(req), req), write));
    }
    const table = wantsTable(req.headers.accept);
    const asTable = (objs: Obj[], meta: Record<string, unknown>) =>
      toTable(route.type, objs, meta, includeObjectOf(q.get('includeObject')));
    switch (method) {
      case 'GET': {
        if (route.name) {
          const o = this.get(route);
          return send(
            res,
            200,
            table ? asTable([o], { resourceVersion: o.metadata.resourceVersion }) : o,
          );
        }
        if (q.get('watch') === 'true' || q.get('watch') === '1')
          return this.watch(route, q, req, res, table);
        const list = this.list(route, q);
        return send(
          res,
          200,
          table ? asTable(list.items as Obj[], list.metadata as Record<string, unknown>) : list,
        );
      }
      case 'POST':
        if (route.name)
          throw new ApiError(
            405,
            'MethodNotAllowed',
            'the server does not allow this method on the requested resource',
          );
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
          this.patch(
            route,
            (await readBody(req)).toString('utf8'),
            req.headers['content-type'] ?? '',
            q,
            write,
          ),
        );
      case 'DELETE': {
        // kubectl sends DeleteOptions in the body (`dryRun: ["All"]`); others in the query.
        const text = await readBody(req);
        let bodyDryRun: string[] = [];
        if (text.toString('utf8').trim()) {
          const opts = parseBody(text, req) as { dryRun?: unknown };
          if (Array.isArray(opts.dryRun)) bodyDryRun = opts.dryRun.map(String);
        }
        write.dryRun = dryRunOf([...q.getAll('dryRun'), ...bodyDryRun], 'DeleteOptions');
        const deleted = route.name
          ? this.delete(route, write)
          : this.deleteCollection(route, q, write);
        const delayMs = this.faults.deleteAnswerDelayMs;
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        return send(res, 200, deleted);
      }
      default:
        throw new ApiError(
          405,
          'MethodNotAllowed',
          `the server does not allow this method on the requested resource`,
        );
    }
  }

  private async adminFaults(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'POST') {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse((await readBody(req)).toString('utf8') || '{}') as Record<
          string,
          unknown
        >;
      } catch {
        throw new ApiError(400, 'BadRequest', 'faults must be a JSON object');
      }
      this.admission.setFaults?.(body);
    } else if (req.method !== 'GET') {
      throw new ApiError(405, 'MethodNotAllowed', 'GET or POST /sim/faults');
    }
    send(res, 200, this.admission.setFaults?.({}) ?? this.faults);
  }

  /** The groups discovery lists, core (`''`) first. */
  private servedGroups(): ServedGroup[] {
    const byGroup = new Map<string, ResourceType[]>();
    for (const r of [...this.store.resources, ...(this.options.access ? REVIEWS : [])])
      byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r]);
    const groups: ServedGroup[] = [...byGroup].map(([name, resources]) => ({
      name,
      version: 'v1',
      resources,
    }));
    if (this.kubevirt)
      groups.push({
        name: 'subresources.kubevirt.io',
        version: 'v1',
        resources: [],
        extra: ['start', 'stop', 'restart'].map((s) => ({
          name: `virtualmachines/${s}`,
          kind: 'VirtualMachine',
          namespaced: true,
          verbs: ['update'],
        })),
      });
    return groups;
  }

  private discovery(path: string, req: IncomingMessage, res: ServerResponse): boolean {
    const groups = this.servedGroups();
    const core = groups.find((g) => g.name === '');
    const named = groups.filter((g) => g.name !== '');
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
    if (path === '/api' || path === '/apis') {
      const aggregated = aggregatedVersionAccepted(req.headers.accept);
      if (aggregated) {
        const body = aggregatedDiscovery(
          path === '/api' ? (core ? [core] : []) : named,
          aggregated,
        );
        send(
          res,
          200,
          body,
          `application/json;g=apidiscovery.k8s.io;v=${aggregated};as=APIGroupDiscoveryList`,
        );
      } else if (path === '/api') {
        send(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
      } else {
        send(res, 200, {
          kind: 'APIGroupList',
          apiVersion: 'v1',
          groups: named.map((g) => ({
            name: g.name,
            versions: [{ groupVersion: `${g.name}/v1`, version: 'v1' }],
            preferredVersion: { groupVersion: `${g.name}/v1`, version: 'v1' },
          })),
        });
      }
      return true;
    }
    if (path === '/api/v1' && core) {
      send(res, 200, resourceList(core));
      return true;
    }
    const m = /^\/apis\/([^/]+)\/(v1)$/.exec(path);
    const group = m && named.find((g) => g.name === m[1]);
    if (group) {
      send(res, 200, resourceList(group));
      return true;
    }
    if (path === '/openapi/v2') {
      send(res, 200, this.openapi.v2());
      return true;
    }
    if (path === '/openapi/v3') {
      send(res, 200, this.openapi.v3Index());
      return true;
    }
    const v3 = /^\/openapi\/v3\/(.+)$/.exec(path);
    const doc = v3 && this.openapi.v3(v3[1]!);
    if (doc) {
      res.setHeader('etag', `"${doc.hash}"`);
      send(res, 200, doc.body);
      return true;
    }
    return false;
  }

  private isResourcePath(path: string): boolean {
    const parts = path.split('/').filter(Boolean);
    return (
      (parts[0] === 'api' && parts[1] === 'v1' && parts.length >= 3) ||
      (parts[0] === 'apis' && parts.length >= 4)
    );
  }

  private route(path: string): Route {
    const parts = path.split('/').filter(Boolean);
    let group = '';
    let rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
    else if (parts[0] === 'apis' && parts.length >= 3) {
      group = parts[1]!;
      rest = parts.slice(3);
    } else throw NOT_FOUND();
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, sub, ...extra] = rest;
    if (extra.length > 0) throw NOT_FOUND();
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
    const review =
      this.options.access && REVIEWS.find((r) => r.group === group && r.plural === plural);
    if (review) {
      if (name || (review.namespaced && !namespace)) throw NOT_FOUND();
      return { type: review, namespace: review.namespaced ? namespace : undefined };
    }
    const type = this.store.resources.find((r) => r.group === group && r.plural === plural);
    if (!type) throw NOT_FOUND();
    if (type.plural === 'namespaces' && rest.length === 1 && namespace) {
      return { type, name: namespace };
    }
    if (sub) {
      const known =
        (sub === 'status' && type.status) ||
        (sub === 'log' && type.plural === 'pods') ||
        (sub === 'token' && type.plural === 'serviceaccounts');
      if (!known) throw NOT_FOUND();
    }
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
    const fields = parseFieldSelector(
      q.get('fieldSelector') ?? undefined,
      route.type,
      this.kubernetesMinor,
    );
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
    this.admission.beforeCreate?.(route.type, body, { dryRun: write.dryRun });
    return withTypeMeta(
      route.type,
      this.store.create(route.type.plural, body, { dryRun: write.dryRun }),
    );
  }

  private replace(route: Route, body: Obj, write: WriteContext): Obj {
    if (!isObject(body) || !isObject(body.metadata))
      throw new ApiError(400, 'BadRequest', 'the body of the request was in an unknown format');
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
    const json = contentType.startsWith('application/json-patch+json');
    const apply = contentType.startsWith('application/apply-patch');
    if (!strategic && !json && !apply && !contentType.startsWith('application/merge-patch+json'))
      throw new ApiError(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
      );
    // Checked before the body and the object, as the real server does for custom resources.
    if (strategic) assertStrategicMergePatchable(route.type.kind);
    const old = this.store.get(route.type.plural, route.namespace, route.name!);
    let patch: unknown;
    if (!json) {
      try {
        patch = apply ? parseYaml(text) : JSON.parse(text);
      } catch {
        throw new ApiError(400, 'BadRequest', 'the body of the request was in an unknown format');
      }
    }
    if (!old) {
      if (apply) {
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
      json
        ? jsonPatch(old, text)
        : strategic
          ? strategicMergePatch(route.type.kind, old, patch)
          : mergePatch(old, patch)
    ) as Obj;
    if (!isObject(merged) || !isObject(merged.metadata))
      throw new ApiError(422, 'Invalid', 'the patched object has no metadata');
    // A JSON patch names the resourceVersion it expects inside the object it produces.
    const expectedRv = json
      ? merged.metadata.resourceVersion !== old.metadata.resourceVersion
        ? merged.metadata.resourceVersion
        : undefined
      : (patch as Obj | null)?.metadata?.resourceVersion;
    merged.metadata = {
      ...merged.metadata,
      name: old.metadata.name,
      namespace: old.metadata.namespace,
    };
    if (route.sub !== 'status' && route.type.status && 'status' in old) merged.status = old.status;
    if (route.sub === 'status') {
      const statusOnly = { ...old, status: merged.status };
      return this.commit(route, statusOnly, old, write, expectedRv);
    }
    return this.commit(route, merged, old, write, expectedRv);
  }

  private commit(route: Route, next: Obj, old: Obj, write: WriteContext, expectedRv?: string): Obj {
    next.apiVersion ??= old.apiVersion;
    next.kind ??= old.kind;
    write.warn(this.validator.admit(route.type, next, write.fieldValidation, route.sub));
    this.admission.beforeUpdate?.(route.type, next, old, { dryRun: write.dryRun });
    const specChanged = JSON.stringify(next.spec) !== JSON.stringify(old.spec);
    return withTypeMeta(
      route.type,
      this.store.update(route.type.plural, next, {
        expectedRv,
        specChanged,
        dryRun: write.dryRun,
      }),
    );
  }

  private delete(route: Route, write: WriteContext): Obj | Record<string, unknown> {
    const cur = this.store.get(route.type.plural, route.namespace, route.name!);
    if (!cur) throw this.notFound(route.type, route.name!);
    const handled = this.admission.onDelete?.(route.type, cur, { dryRun: write.dryRun });
    if (handled) return withTypeMeta(route.type, handled);
    const gone = this.store.remove(route.type.plural, route.namespace, route.name!, {
      dryRun: write.dryRun,
    });
    if (gone?.metadata.deletionTimestamp) return withTypeMeta(route.type, gone);
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: { name: route.name, kind: route.type.plural, uid: cur.metadata.uid },
    };
  }

  private deleteCollection(
    route: Route,
    q: URLSearchParams,
    write: WriteContext,
  ): Record<string, unknown> {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(
      q.get('fieldSelector') ?? undefined,
      route.type,
      this.kubernetesMinor,
    );
    const items: Obj[] = [];
    for (const o of this.store.list(route.type.plural, route.namespace)) {
      if (!labels(o.metadata.labels ?? {}) || !fields(o)) continue;
      const handled = this.admission.onDelete?.(route.type, o, { dryRun: write.dryRun });
      const left =
        handled ??
        this.store.remove(route.type.plural, o.metadata.namespace, o.metadata.name!, {
          dryRun: write.dryRun,
        });
      if (left) items.push(withTypeMeta(route.type, structuredClone(left)));
    }
    // The real answer: the list of what was deleted.
    return {
      kind: `${route.type.kind}List`,
      apiVersion: route.type.group ? `${route.type.group}/${route.type.version}` : 'v1',
      metadata: { resourceVersion: String(this.store.resourceVersion) },
      items,
    };
  }

  /** The review kinds: each answered from RBAC at once and never stored. */
  private review(route: Route, body: Obj, user: UserInfo): Record<string, unknown> {
    const access = this.options.access!;
    if (!isObject(body) || !isObject(body.spec ?? {}))
      throw new ApiError(400, 'BadRequest', 'the body of the request was in an unknown format');
    const spec = (body.spec ?? {}) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    const answer = (status: Record<string, unknown>) => ({
      kind: route.type.kind,
      apiVersion: `${route.type.group}/v1`,
      metadata: { creationTimestamp: null, ...(isObject(body.metadata) ? body.metadata : {}) },
      spec,
      status,
    });
    const decide = (who: UserInfo, namespace: string | undefined) => {
      const ra = spec.resourceAttributes as Record<string, string> | undefined;
      const nra = spec.nonResourceAttributes as Record<string, string> | undefined;
      if (!ra && !nra)
        throw invalidReview(
          route.type.kind,
          'spec.resourceAttributes',
          'exactly one of nonResourceAttributes or resourceAttributes must be specified',
        );
      const attrs: RequestAttributes = ra
        ? {
            user: who,
            verb: ra.verb ?? '',
            resourceRequest: true,
            path: '',
            apiGroup: ra.group ?? '',
            apiVersion: ra.version ?? '',
            resource: ra.resource ?? '',
            subresource: ra.subresource ?? '',
            namespace: namespace ?? ra.namespace ?? '',
            name: ra.name ?? '',
          }
        : {
            user: who,
            verb: nra!.verb ?? '',
            resourceRequest: false,
            path: nra!.path ?? '',
            apiGroup: '',
            apiVersion: '',
            resource: '',
            subresource: '',
            namespace: '',
            name: '',
          };
      if (who.groups.includes('system:masters')) return { allowed: true, reason: '' };
      const d = access.authorize(attrs);
      return d.allowed
        ? { allowed: true, reason: d.reason || 'RBAC: allowed' }
        : { allowed: false, ...(d.reason ? { reason: d.reason } : {}) };
    };
    switch (route.type.plural) {
      case 'selfsubjectaccessreviews':
        return answer(decide(user, undefined));
      case 'subjectaccessreviews':
      case 'localsubjectaccessreviews': {
        if (!spec.user && !(spec.groups as unknown[] | undefined)?.length)
          throw invalidReview(
            route.type.kind,
            'spec.user',
            'at least one of user or group must be specified',
          );
        const who: UserInfo = {
          username: spec.user ?? '',
          uid: spec.uid,
          groups: spec.groups ?? [],
        };
        return answer(decide(who, route.namespace));
      }
      case 'selfsubjectrulesreviews': {
        if (!spec.namespace)
          throw invalidReview(route.type.kind, 'spec.namespace', 'Required value');
        if (user.groups.includes('system:masters'))
          return answer({
            resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }],
            nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
            incomplete: false,
          });
        return answer(access.rulesFor(user, spec.namespace as string));
      }
      default: // selfsubjectreviews
        return {
          kind: 'SelfSubjectReview',
          apiVersion: 'authentication.k8s.io/v1',
          metadata: { creationTimestamp: null },
          status: {
            userInfo: {
              username: user.username,
              ...(user.uid ? { uid: user.uid } : {}),
              groups: user.groups,
            },
          },
        };
    }
  }

  /** `POST serviceaccounts/<name>/token`: a TokenRequest answered with a bound token. */
  private tokenRequest(route: Route, body: Obj, write: WriteContext): Record<string, unknown> {
    const access = this.options.access;
    if (!access) throw NOT_FOUND();
    const sa = this.store.get('serviceaccounts', route.namespace, route.name!);
    if (!sa) throw this.notFound(route.type, route.name!);
    const spec = (isObject(body) && isObject(body.spec) ? body.spec : {}) as {
      audiences?: string[];
      expirationSeconds?: number;
    };
    if (spec.expirationSeconds !== undefined && spec.expirationSeconds < 600)
      throw new ApiError(
        422,
        'Invalid',
        `TokenRequest.authentication.k8s.io "${route.name}" is invalid: spec.expirationSeconds: Invalid value: ${spec.expirationSeconds}: may not specify a duration less than 10 minutes`,
      );
    const expirationSeconds = spec.expirationSeconds ?? 3600;
    const issued = write.dryRun
      ? {
          token: '',
          expirationTimestamp: new Date(Date.now() + expirationSeconds * 1000)
            .toISOString()
            .replace(/\.\d+Z$/, 'Z'),
        }
      : access.issueToken(sa, { ...spec, expirationSeconds });
    return {
      kind: 'TokenRequest',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { name: route.name, namespace: route.namespace, creationTimestamp: null },
      spec: {
        audiences: spec.audiences ?? ['https://kubernetes.default.svc.cluster.local'],
        expirationSeconds,
        boundObjectRef: null,
      },
      status: issued,
    };
  }

  private watch(
    route: Route,
    q: URLSearchParams,
    req: IncomingMessage,
    res: ServerResponse,
    table: boolean,
  ): void {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(
      q.get('fieldSelector') ?? undefined,
      route.type,
      this.kubernetesMinor,
    );
    const bookmarks = q.get('allowWatchBookmarks') === 'true';
    const sinceRaw = q.get('resourceVersion');
    const since = sinceRaw && sinceRaw !== '0' ? Number(sinceRaw) : undefined;
    const includeObject = includeObjectOf(q.get('includeObject'));
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // A real API server answers a watch at once, before any event: without
    // this, Node holds the headers back and the client's request hangs.
    res.flushHeaders();
    const write = (type: string, object: Obj | Record<string, unknown>) => {
      // `kubectl get -w` watches for Tables: each event carries a one-row Table.
      const body =
        table && type !== 'ERROR' && type !== 'BOOKMARK'
          ? toTable(
              route.type,
              [object as Obj],
              { resourceVersion: (object as Obj).metadata.resourceVersion },
              includeObject,
            )
          : object;
      // A watch ended by its timeout stays registered until its 'close': nothing more goes out.
      if (res.writableEnded || res.destroyed) return;
      res.write(JSON.stringify({ type, object: body }) + '\n');
    };
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
      if (matches(e)) write(e.type, withTypeMeta(route.type, structuredClone(e.object)));
    });
    const bookmark = bookmarks
      ? setInterval(() => {
          write('BOOKMARK', bookmarkObject(false));
        }, this.options.bookmarkIntervalMs ?? 60_000)
      : undefined;
    const timeoutMs = Number(q.get('timeoutSeconds') ?? 1800) * 1000;
    // Like the watch cache, a last bookmark ~2 s before the deadline, so a
    // client resumes from there rather than from its last event.
    const lastBookmark = bookmarks
      ? setTimeout(() => write('BOOKMARK', bookmarkObject(false)), Math.max(0, timeoutMs - 2000))
      : undefined;
    const timeout = setTimeout(() => {
      done();
      res.end();
    }, timeoutMs);
    const done = () => {
      unsubscribe();
      if (bookmark) clearInterval(bookmark);
      clearTimeout(lastBookmark);
      clearTimeout(timeout);
      this.watches.delete(res);
    };
    req.on('close', done);
    res.on('close', done);
  }
}

/** The verb authorization sees for a request (apiserver's RequestInfo). */
function verbOf(method: string, route: Route | undefined, q: URLSearchParams): string {
  if (!route) return method.toLowerCase();
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (q.get('watch') === 'true' || q.get('watch') === '1') return 'watch';
      return route.name ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return route.name ? 'delete' : 'deletecollection';
    default:
      return method.toLowerCase();
  }
}

/** apiserver's `ForbiddenStatusError`. */
function forbidden(attrs: RequestAttributes, reason: string): ApiError {
  const who = `User ${JSON.stringify(attrs.user.username)}`;
  let message: string;
  if (!attrs.resourceRequest)
    message = `${who} cannot ${attrs.verb} path ${JSON.stringify(attrs.path)}`;
  else {
    const resource = attrs.subresource ? `${attrs.resource}/${attrs.subresource}` : attrs.resource;
    message = `${who} cannot ${attrs.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(attrs.apiGroup)} ${
      attrs.namespace
        ? `in the namespace ${JSON.stringify(attrs.namespace)}`
        : 'at the cluster scope'
    }`;
  }
  if (reason) message += `: ${reason}`;
  const qualified = attrs.resource
    ? `${attrs.resource}${attrs.apiGroup ? `.${attrs.apiGroup}` : ''}`
    : '';
  const prefix = !qualified
    ? 'forbidden'
    : attrs.name
      ? `${qualified} ${JSON.stringify(attrs.name)} is forbidden`
      : `${qualified} is forbidden`;
  return new ApiError(403, 'Forbidden', `${prefix}: ${message}`, {
    ...(attrs.name ? { name: attrs.name } : {}),
    group: attrs.apiGroup,
    kind: attrs.resource,
  });
}

function invalidReview(kind: string, field: string, message: string): ApiError {
  return new ApiError(
    422,
    'Invalid',
    `${kind}.authorization.k8s.io "" is invalid: ${field}: ${message}`,
    {
      group: 'authorization.k8s.io',
      kind,
      causes: [{ reason: 'FieldValueInvalid', message, field }],
    },
  );
}

/**
 * `?dryRun=`: only `All` exists; anything else is refused like the API
 * server's options validation (422 on `<Verb>Options.meta.k8s.io`).
 */
function dryRunOf(values: string[], optionsKind: string): boolean {
  for (const v of values) {
    if (v !== 'All') throw unsupportedOption(optionsKind, 'dryRun', v, ['All']);
  }
  return values.length > 0;
}

function tailLines(text: string, tail: string | null): string {
  const n = tail === null ? NaN : Number(tail);
  if (!Number.isInteger(n) || n < 0) return text;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines
    .slice(Math.max(0, lines.length - n))
    .map((l) => `${l}\n`)
    .join('');
}

function keyOf(o: Obj): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;
}

function withTypeMeta(type: ResourceType, o: Obj): Obj {
  o.apiVersion = type.group ? `${type.group}/${type.version}` : 'v1';
  o.kind = type.kind;
  return o;
}

function parseBody(body: Buffer, req: IncomingMessage): Obj {
  const contentType = req.headers['content-type'] ?? '';
  if (contentType.startsWith(PROTOBUF)) return decodeProtobuf(body);
  const text = body.toString('utf8');
  try {
    return contentType.includes('yaml') ? (parseYaml(text) as Obj) : (JSON.parse(text) as Obj);
  } catch {
    throw new ApiError(400, 'BadRequest', 'the body of the request was in an unknown format');
  }
}
