import type { ResourceType } from './store.js';

/**
 * What discovery says about each resource the sim can serve, as a real API
 * server of the same kinds says it (`kubectl api-resources -o wide` on
 * Kubernetes 1.30 with KubeVirt 1.x): short names, categories, verbs and
 * subresources. Both the legacy documents (`/api/v1`, `/apis/<g>/<v>`) and
 * the aggregated ones (`application/json;g=apidiscovery.k8s.io;v=v2`, what
 * kubectl 1.30+ asks for first) are rendered from this one table.
 */
export interface ResourceDiscovery {
  shortNames?: string[];
  categories?: string[];
  verbs: string[];
  subresources?: {
    name: string;
    verbs: string[];
    kind?: string;
    group?: string;
    version?: string;
  }[];
}

const ALL_VERBS = [
  'create',
  'delete',
  'deletecollection',
  'get',
  'list',
  'patch',
  'update',
  'watch',
];
const STATUS = { name: 'status', verbs: ['get', 'patch', 'update'] };

const DISCOVERY: Record<string, ResourceDiscovery> = {
  // The namespace controller deletes namespaces one by one: no deletecollection.
  '/namespaces': {
    shortNames: ['ns'],
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    subresources: [{ name: 'finalize', verbs: ['update'] }, STATUS],
  },
  '/nodes': { shortNames: ['no'], verbs: ALL_VERBS, subresources: [STATUS] },
  '/secrets': { verbs: ALL_VERBS },
  '/configmaps': { shortNames: ['cm'], verbs: ALL_VERBS },
  // Services have no deletecollection (their REST storage never had one).
  '/services': {
    shortNames: ['svc'],
    categories: ['all'],
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    subresources: [STATUS],
  },
  '/pods': {
    shortNames: ['po'],
    categories: ['all'],
    verbs: ALL_VERBS,
    subresources: [{ name: 'log', verbs: ['get'] }, STATUS],
  },
  '/events': { shortNames: ['ev'], verbs: ALL_VERBS },
  '/resourcequotas': { shortNames: ['quota'], verbs: ALL_VERBS, subresources: [STATUS] },
  '/limitranges': { shortNames: ['limits'], verbs: ALL_VERBS },
  '/serviceaccounts': {
    shortNames: ['sa'],
    verbs: ALL_VERBS,
    subresources: [
      {
        name: 'token',
        verbs: ['create'],
        kind: 'TokenRequest',
        group: 'authentication.k8s.io',
        version: 'v1',
      },
    ],
  },
  'networking.k8s.io/networkpolicies': { shortNames: ['netpol'], verbs: ALL_VERBS },
  'rbac.authorization.k8s.io/roles': { verbs: ALL_VERBS },
  'rbac.authorization.k8s.io/rolebindings': { verbs: ALL_VERBS },
  'rbac.authorization.k8s.io/clusterroles': { verbs: ALL_VERBS },
  'rbac.authorization.k8s.io/clusterrolebindings': { verbs: ALL_VERBS },
  'authorization.k8s.io/selfsubjectaccessreviews': { verbs: ['create'] },
  'authorization.k8s.io/selfsubjectrulesreviews': { verbs: ['create'] },
  'authorization.k8s.io/subjectaccessreviews': { verbs: ['create'] },
  'authorization.k8s.io/localsubjectaccessreviews': { verbs: ['create'] },
  'authentication.k8s.io/selfsubjectreviews': { verbs: ['create'] },
  // KubeVirt's CRDs (virt-operator's crds): short names and the `all` category.
  'kubevirt.io/virtualmachines': {
    shortNames: ['vm', 'vms'],
    categories: ['all'],
    verbs: ALL_VERBS,
    subresources: [STATUS],
  },
  'kubevirt.io/virtualmachineinstances': {
    shortNames: ['vmi', 'vmis'],
    categories: ['all'],
    verbs: ALL_VERBS,
  },
  'kubevirt.io/kubevirts': {
    shortNames: ['kv', 'kvs'],
    categories: ['all'],
    verbs: ALL_VERBS,
    subresources: [STATUS],
  },
};

export function discoveryOf(type: ResourceType): ResourceDiscovery {
  return DISCOVERY[`${type.group}/${type.plural}`] ?? { verbs: ALL_VERBS };
}

/** Whether the resource serves `verb` (e.g. `deletecollection`), as discovery says. */
export function serves(type: ResourceType, verb: string): boolean {
  return discoveryOf(type).verbs.includes(verb);
}

/** One API group (or the core group, `''`) as discovery lists it. */
export interface ServedGroup {
  name: string;
  version: string;
  resources: ResourceType[];
  /** Subresource-only resources such as KubeVirt's `virtualmachines/start`. */
  extra?: { name: string; kind: string; namespaced: boolean; verbs: string[] }[];
}

const singular = (t: ResourceType) => t.kind.toLowerCase();

/** The legacy `APIResourceList` of one group version. */
export function resourceList(group: ServedGroup): Record<string, unknown> {
  const resources = group.resources.flatMap((r) => {
    const d = discoveryOf(r);
    return [
      {
        name: r.plural,
        singularName: singular(r),
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: d.verbs,
        ...(d.shortNames ? { shortNames: d.shortNames } : {}),
        ...(d.categories ? { categories: d.categories } : {}),
      },
      ...(d.subresources ?? [])
        .filter((s) => s.name !== 'status' || r.status)
        .map((s) => ({
          name: `${r.plural}/${s.name}`,
          singularName: '',
          namespaced: r.namespaced,
          ...(s.group ? { group: s.group, version: s.version } : {}),
          kind: s.kind ?? r.kind,
          verbs: s.verbs,
        })),
    ];
  });
  for (const e of group.extra ?? [])
    resources.push({
      name: e.name,
      singularName: '',
      namespaced: e.namespaced,
      kind: e.kind,
      verbs: e.verbs,
    });
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group.name ? `${group.name}/${group.version}` : group.version,
    resources,
  };
}

/** The aggregated `APIGroupDiscoveryList` (apidiscovery.k8s.io/v2) of some groups. */
export function aggregatedDiscovery(
  groups: ServedGroup[],
  version: 'v2' | 'v2beta1',
): Record<string, unknown> {
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: `apidiscovery.k8s.io/${version}`,
    metadata: {},
    items: groups.map((g) => {
      const resources = g.resources.map((r) => {
        const d = discoveryOf(r);
        return {
          resource: r.plural,
          responseKind: { group: r.group, version: r.version, kind: r.kind },
          scope: r.namespaced ? 'Namespaced' : 'Cluster',
          singularResource: singular(r),
          verbs: d.verbs,
          ...(d.shortNames ? { shortNames: d.shortNames } : {}),
          ...(d.categories ? { categories: d.categories } : {}),
          ...((d.subresources ?? []).some((s) => s.name !== 'status' || r.status)
            ? {
                subresources: (d.subresources ?? [])
                  .filter((s) => s.name !== 'status' || r.status)
                  .map((s) => ({
                    subresource: s.name,
                    responseKind: {
                      group: s.group ?? r.group,
                      version: s.version ?? r.version,
                      kind: s.kind ?? r.kind,
                    },
                    verbs: s.verbs,
                  })),
              }
            : {}),
        };
      });
      // Subresource-only resources appear as their parent with subresources.
      const extraByParent = new Map<
        string,
        { subresource: string; verbs: string[]; kind: string; namespaced: boolean }[]
      >();
      for (const e of g.extra ?? []) {
        const [parent, sub] = e.name.split('/') as [string, string];
        extraByParent.set(parent, [
          ...(extraByParent.get(parent) ?? []),
          { subresource: sub, verbs: e.verbs, kind: e.kind, namespaced: e.namespaced },
        ]);
      }
      for (const [parent, subs] of extraByParent)
        resources.push({
          resource: parent,
          responseKind: { group: '', version: '', kind: '' },
          scope: subs[0]!.namespaced ? 'Namespaced' : 'Cluster',
          singularResource: '',
          verbs: [],
          subresources: subs.map((s) => ({
            subresource: s.subresource,
            responseKind: { group: '', version: '', kind: s.kind },
            verbs: s.verbs,
          })),
        } as (typeof resources)[number]);
      return {
        metadata: { name: g.name, creationTimestamp: null },
        versions: [{ version: g.version, resources, freshness: 'Current' }],
      };
    }),
  };
}

/**
 * Which discovery document the client accepts first: kubectl 1.30+ sends
 * `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
 * …;v=v2beta1…, application/json` and takes whichever comes back.
 */
export function aggregatedVersionAccepted(
  accept: string | undefined,
): 'v2' | 'v2beta1' | undefined {
  for (const part of (accept ?? '').split(',')) {
    const params = new Map(
      part
        .split(';')
        .slice(1)
        .map((p) => p.trim().split('=') as [string, string]),
    );
    if (params.get('g') !== 'apidiscovery.k8s.io' || params.get('as') !== 'APIGroupDiscoveryList')
      continue;
    const v = params.get('v');
    if (v === 'v2' || v === 'v2beta1') return v;
  }
  return undefined;
}
