import { randomBytes } from 'node:crypto';
import type { AccessControl, RequestAttributes, UserInfo } from './api.js';
import type { Obj, ObjectStore } from './store.js';

/**
 * RBAC as kube-apiserver's RBAC authorizer applies it, over the Roles,
 * ClusterRoles and bindings in the sim's store: a request is allowed when a
 * rule of a role bound to the user (cluster-wide by a ClusterRoleBinding, or
 * in the request's namespace by a RoleBinding) matches its verb, API group,
 * resource (`pods/log` for a subresource, `*` and `*\/log` wildcards),
 * resourceNames, or, for paths outside the API, its non-resource URL (exact
 * or a `/prefix*`). Aggregated ClusterRoles are not computed. ServiceAccount
 * tokens come from TokenRequest (`kubectl create token`) and name
 * `system:serviceaccount:<ns>:<name>` in groups `system:serviceaccounts`,
 * `system:serviceaccounts:<ns>` and `system:authenticated`; a token dies with
 * its ServiceAccount or at its expiry.
 */
interface PolicyRule {
  verbs?: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}
interface Subject {
  kind?: string;
  name?: string;
  namespace?: string;
}
interface Binding {
  roleRef?: { kind?: string; name?: string };
  subjects?: Subject[];
}

/** One request RBAC allowed, and by which binding (what a test checks labvirt's grants against). */
export interface RbacDecision {
  user: string;
  verb: string;
  apiGroup: string;
  resource: string;
  subresource: string;
  namespace: string;
  /** The object's name ('' for lists and creates). */
  name: string;
  allowed: boolean;
}

/** The cluster's own roles and bindings, as kube-apiserver bootstraps them (the parts the sim needs). */
export const BOOTSTRAP_POLICY: Obj[] = [
  clusterRole('cluster-admin', [
    { apiGroups: ['*'], resources: ['*'], verbs: ['*'] },
    { nonResourceURLs: ['*'], verbs: ['*'] },
  ]),
  clusterRole('system:discovery', [
    {
      nonResourceURLs: [
        '/api',
        '/api/*',
        '/apis',
        '/apis/*',
        '/healthz',
        '/livez',
        '/openapi',
        '/openapi/*',
        '/readyz',
        '/version',
        '/version/',
      ],
      verbs: ['get'],
    },
  ]),
  clusterRole('system:public-info-viewer', [
    { nonResourceURLs: ['/healthz', '/livez', '/readyz', '/version', '/version/'], verbs: ['get'] },
  ]),
  clusterRole('system:basic-user', [
    {
      apiGroups: ['authorization.k8s.io'],
      resources: ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'],
      verbs: ['create'],
    },
    { apiGroups: ['authentication.k8s.io'], resources: ['selfsubjectreviews'], verbs: ['create'] },
  ]),
  clusterRoleBinding('cluster-admin', 'cluster-admin', 'system:masters'),
  clusterRoleBinding('system:discovery', 'system:discovery', 'system:authenticated'),
  clusterRoleBinding('system:basic-user', 'system:basic-user', 'system:authenticated'),
  clusterRoleBinding(
    'system:public-info-viewer',
    'system:public-info-viewer',
    'system:authenticated',
    'system:unauthenticated',
  ),
];

function clusterRole(name: string, rules: PolicyRule[]): Obj {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: {
      name,
      labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' },
      annotations: { 'rbac.authorization.kubernetes.io/autoupdate': 'true' },
    },
    rules,
  };
}

function clusterRoleBinding(name: string, role: string, ...groups: string[]): Obj {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: {
      name,
      labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' },
      annotations: { 'rbac.authorization.kubernetes.io/autoupdate': 'true' },
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
    subjects: groups.map((g) => ({
      kind: 'Group',
      apiGroup: 'rbac.authorization.k8s.io',
      name: g,
    })),
  };
}

const SA_PREFIX = 'system:serviceaccount:';

function subjectMatches(s: Subject, user: UserInfo, bindingNamespace: string | undefined): boolean {
  switch (s.kind) {
    case 'User':
      return s.name === user.username;
    case 'Group':
      return s.name !== undefined && user.groups.includes(s.name);
    case 'ServiceAccount':
      return (
        user.username === `${SA_PREFIX}${s.namespace ?? bindingNamespace ?? ''}:${s.name ?? ''}`
      );
    default:
      return false;
  }
}

const has = (list: string[] | undefined, value: string) =>
  (list ?? []).some((x) => x === '*' || x === value);

function resourceMatches(rule: PolicyRule, resource: string, subresource: string): boolean {
  const combined = subresource ? `${resource}/${subresource}` : resource;
  return (rule.resources ?? []).some(
    (r) => r === '*' || r === combined || (subresource !== '' && r === `*/${subresource}`),
  );
}

function nonResourceMatches(rule: PolicyRule, path: string): boolean {
  return (rule.nonResourceURLs ?? []).some(
    (u) => u === '*' || u === path || (u.endsWith('*') && path.startsWith(u.slice(0, -1))),
  );
}

export function ruleAllows(rule: PolicyRule, a: RequestAttributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  if (!a.resourceRequest) return nonResourceMatches(rule, a.path);
  if (!has(rule.apiGroups, a.apiGroup) || !resourceMatches(rule, a.resource, a.subresource))
    return false;
  const names = rule.resourceNames ?? [];
  return names.length === 0 || (a.name !== '' && names.includes(a.name));
}

interface IssuedToken {
  namespace: string;
  name: string;
  uid: string;
  expires: number;
}

export class Rbac implements AccessControl {
  private readonly tokens = new Map<string, IssuedToken>();
  /** Every decision, in order (bounded): what tests compare grants against. */
  readonly decisions: RbacDecision[] = [];

  constructor(private readonly store: ObjectStore) {}

  userOfToken(token: string): UserInfo | undefined {
    const t = this.tokens.get(token);
    if (!t) return undefined;
    const sa = this.store.peek('serviceaccounts', t.namespace, t.name);
    if (Date.now() > t.expires || !sa || sa.metadata.uid !== t.uid) {
      this.tokens.delete(token);
      return undefined;
    }
    return {
      username: `${SA_PREFIX}${t.namespace}:${t.name}`,
      uid: t.uid,
      groups: [
        'system:serviceaccounts',
        `system:serviceaccounts:${t.namespace}`,
        'system:authenticated',
      ],
    };
  }

  issueToken(
    serviceAccount: Obj,
    spec: { expirationSeconds?: number },
  ): { token: string; expirationTimestamp: string } {
    const expires = Date.now() + (spec.expirationSeconds ?? 3600) * 1000;
    const token = `sim-sa.${randomBytes(24).toString('base64url')}`;
    this.tokens.set(token, {
      namespace: serviceAccount.metadata.namespace ?? '',
      name: serviceAccount.metadata.name ?? '',
      uid: serviceAccount.metadata.uid ?? '',
      expires,
    });
    return {
      token,
      expirationTimestamp: new Date(expires).toISOString().replace(/\.\d+Z$/, 'Z'),
    };
  }

  /** The rules that apply to `user` in `namespace` ('' = cluster scope only). */
  private rulesOf(user: UserInfo, namespace: string): PolicyRule[] {
    const rules: PolicyRule[] = [];
    const roleRules = (ref: Binding['roleRef'], ns: string | undefined): PolicyRule[] => {
      const role =
        ref?.kind === 'ClusterRole'
          ? this.store.peek('clusterroles', undefined, ref.name ?? '')
          : ref?.kind === 'Role' && ns
            ? this.store.peek('roles', ns, ref.name ?? '')
            : undefined;
      return ((role?.rules as PolicyRule[] | undefined) ?? []).map((r) => ({
        ...r,
        // A namespace's bindings never grant non-resource URLs.
        ...(ns ? { nonResourceURLs: undefined } : {}),
      }));
    };
    for (const b of this.store.list('clusterrolebindings') as (Obj & Binding)[])
      if ((b.subjects ?? []).some((s) => subjectMatches(s, user, undefined)))
        rules.push(...roleRules(b.roleRef, undefined));
    if (namespace)
      for (const b of this.store.list('rolebindings', namespace) as (Obj & Binding)[])
        if ((b.subjects ?? []).some((s) => subjectMatches(s, user, namespace)))
          rules.push(...roleRules(b.roleRef, namespace));
    return rules;
  }

  authorize(a: RequestAttributes): { allowed: boolean; reason: string } {
    const allowed = this.rulesOf(a.user, a.resourceRequest ? a.namespace : '').some((r) =>
      ruleAllows(r, a),
    );
    this.decisions.push({
      user: a.user.username,
      verb: a.verb,
      apiGroup: a.apiGroup,
      resource: a.resourceRequest ? a.resource : a.path,
      subresource: a.subresource,
      namespace: a.namespace,
      name: a.name,
      allowed,
    });
    if (this.decisions.length > 100_000) this.decisions.splice(0, 50_000);
    return { allowed, reason: '' };
  }

  rulesFor(user: UserInfo, namespace: string): Record<string, unknown> {
    const rules = this.rulesOf(user, namespace);
    return {
      resourceRules: rules
        .filter((r) => r.resources?.length)
        .map((r) => ({
          verbs: r.verbs ?? [],
          apiGroups: r.apiGroups ?? [],
          resources: r.resources ?? [],
          ...(r.resourceNames?.length ? { resourceNames: r.resourceNames } : {}),
        })),
      nonResourceRules: rules
        .filter((r) => r.nonResourceURLs?.length)
        .map((r) => ({ verbs: r.verbs ?? [], nonResourceURLs: r.nonResourceURLs ?? [] })),
      incomplete: false,
    };
  }
}
