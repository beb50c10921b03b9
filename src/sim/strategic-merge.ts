import { ApiError } from './store.js';

/**
 * Strategic merge patch (`application/strategic-merge-patch+json`) as the
 * real API server applies it (k8s.io/apimachinery/pkg/util/strategicpatch,
 * the `mergeMap`/`mergeSlice` path with parallel lists merged), using the
 * `patchStrategy`/`patchMergeKey` struct tags of k8s.io/api instead of Go
 * reflection. Written from reading those sources, not translated line by line.
 */

type JsonMap = Record<string, unknown>;

/** A list the real types tag `patchStrategy:"merge"`: objects merged by `mergeKey`, or scalars merged as a set. */
interface MergingList {
  mergeKey?: string;
}

/** Field path (`.` between fields, `[]` into list elements) → merge strategy. */
type MergingLists = Readonly<Record<string, MergingList>>;

const byKey = (mergeKey: string): MergingList => ({ mergeKey });
const SET: MergingList = {};

// metav1.ObjectMeta: ownerReferences merge by uid, finalizers merge as a set.
const objectMeta = (at: string): Record<string, MergingList> => ({
  [`${at}ownerReferences`]: byKey('uid'),
  [`${at}finalizers`]: SET,
});

// core/v1 Container and EphemeralContainerCommon carry the same tags.
const container = (at: string): Record<string, MergingList> => ({
  [at]: byKey('name'),
  [`${at}[].ports`]: byKey('containerPort'),
  [`${at}[].env`]: byKey('name'),
  [`${at}[].volumeMounts`]: byKey('mountPath'),
  [`${at}[].volumeDevices`]: byKey('devicePath'),
});

// core/v1 ContainerStatus: the status lists themselves have no strategy (replaced whole).
const containerStatus = (at: string): Record<string, MergingList> => ({
  [`${at}[].volumeMounts`]: byKey('mountPath'),
  [`${at}[].allocatedResourcesStatus`]: byKey('name'),
});

/**
 * Every `patchStrategy:"merge"` field reachable from each kind the sim
 * serves, read from k8s.io/api core/v1 and networking/v1 types.go and
 * apimachinery meta/v1 types.go (kubernetes/api 10b39a39, apimachinery
 * eed236ce). Anything not listed — tolerations, Node taints, Service
 * externalIPs, ServiceAccount imagePullSecrets, NetworkPolicy rules,
 * containerStatuses — has no strategy and is replaced whole.
 */
const MERGING_LISTS_BY_KIND: Readonly<Record<string, MergingLists>> = {
  Namespace: { ...objectMeta('metadata.'), 'status.conditions': byKey('type') },
  Secret: objectMeta('metadata.'),
  ConfigMap: objectMeta('metadata.'),
  Service: {
    ...objectMeta('metadata.'),
    'spec.ports': byKey('port'),
    'status.conditions': byKey('type'),
  },
  Pod: {
    ...objectMeta('metadata.'),
    'spec.volumes': byKey('name'),
    ...objectMeta('spec.volumes[].ephemeral.volumeClaimTemplate.metadata.'),
    ...container('spec.initContainers'),
    ...container('spec.containers'),
    ...container('spec.ephemeralContainers'),
    'spec.imagePullSecrets': byKey('name'),
    'spec.hostAliases': byKey('ip'),
    'spec.topologySpreadConstraints': byKey('topologyKey'),
    'spec.schedulingGates': byKey('name'),
    'spec.resourceClaims': byKey('name'),
    'spec.evictionResponders': byKey('name'),
    'status.conditions': byKey('type'),
    'status.hostIPs': byKey('ip'),
    'status.podIPs': byKey('ip'),
    ...containerStatus('status.initContainerStatuses'),
    ...containerStatus('status.containerStatuses'),
    ...containerStatus('status.ephemeralContainerStatuses'),
    'status.resourceClaimStatuses': byKey('name'),
    'status.nodeAllocatableResourceClaimStatuses': byKey('resourceClaimName'),
    'status.nodeAllocatableResourceClaimStatuses[].mapping': byKey('name'),
    'status.nodeAllocatableResourceClaimStatuses[].overhead': byKey('name'),
    'status.volumeHealth[].healthConditions': byKey('status'),
  },
  Event: objectMeta('metadata.'),
  ResourceQuota: objectMeta('metadata.'),
  LimitRange: objectMeta('metadata.'),
  ServiceAccount: { ...objectMeta('metadata.'), secrets: byKey('name') },
  NetworkPolicy: objectMeta('metadata.'),
  Node: {
    ...objectMeta('metadata.'),
    'spec.podCIDRs': SET,
    'status.conditions': byKey('type'),
    'status.addresses': byKey('type'),
  },
};

const DIRECTIVE = '$patch';
const RETAIN_KEYS = '$retainKeys';
const DELETE_FROM_PRIMITIVE_LIST = '$deleteFromPrimitiveList';
const SET_ELEMENT_ORDER = '$setElementOrder';

/**
 * The real server answers this before reading the body or the object:
 * without Go types (custom resources are Unstructured) there are no patch
 * strategies, so strategic merge patch is not offered.
 */
export function assertStrategicMergePatchable(kind: string): void {
  if (!Object.hasOwn(MERGING_LISTS_BY_KIND, kind)) {
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
    );
  }
}

/**
 * Applies a strategic merge patch to an object of `kind`; neither input is
 * changed. Throws ApiError with the code the real API server answers:
 * 400 for malformed `$deleteFromPrimitiveList`/`$setElementOrder`/`$retainKeys`,
 * 422 for lists of lists, and 500 without a reason (the real server passes
 * those errors through unconverted) for an unknown `$patch` value, a list
 * element missing its merge key, or mismatched types.
 *
 * Unknown `$`-keys and the directives of newly added subtrees are left in
 * the result as the real merge leaves them: it is the decode step after the
 * merge that prunes them as unknown fields (in the sim, write validation).
 */
export function strategicMergePatch(kind: string, original: unknown, patch: unknown): unknown {
  assertStrategicMergePatchable(kind);
  const lists = MERGING_LISTS_BY_KIND[kind]!;
  // A JSON `null` body decodes into a nil Go map: a patch that changes nothing.
  if (patch === null) patch = {};
  if (!isMap(patch)) {
    throw new ApiError(
      400,
      'BadRequest',
      `json: cannot unmarshal ${goJsonKind(patch)} into Go value of type map[string]interface {}`,
    );
  }
  const target = isMap(original) ? structuredClone(original) : {};
  return mergeMap(target, structuredClone(patch), '', lists);
}

function isMap(v: unknown): v is JsonMap {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

type ValueKind = 'map' | 'list' | 'string' | 'number' | 'boolean' | 'null';

function kindOf(v: unknown): ValueKind {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'map';
  return typeof v as 'string' | 'number' | 'boolean';
}

const childPath = (path: string, key: string): string => (path ? `${path}.${key}` : key);

/** Merges `patch` into `original` (both private copies, changed in place). */
function mergeMap(original: JsonMap, patch: JsonMap, path: string, lists: MergingLists): JsonMap {
  if (Object.hasOwn(patch, DIRECTIVE)) {
    const directive = patch[DIRECTIVE];
    if (directive === 'replace') {
      delete patch[DIRECTIVE];
      return withoutNulls(patch) as JsonMap;
    }
    if (directive === 'delete') return {};
    // `$patch: merge` included: the real code accepts it on neither maps nor lists.
    throw unconverted(`unknown patch type: ${goString(directive)} in map: ${goFormat(patch)}`);
  }
  applyRetainKeys(original, patch);
  applySetElementOrder(original, patch, path, lists);

  for (const [patchKey, patchValue] of Object.entries(patch)) {
    let key = patchKey;
    let isDeleteList = false;
    if (patchKey.startsWith(DELETE_FROM_PRIMITIVE_LIST)) {
      const field = extractKey(patchKey, DELETE_FROM_PRIMITIVE_LIST);
      if (field) key = field;
      isDeleteList = true;
    }
    if (patchValue === null) {
      delete original[key];
      continue;
    }
    const originalKind = Object.hasOwn(original, key) ? kindOf(original[key]) : undefined;
    const patchKind = kindOf(patchValue);
    if (originalKind !== patchKind) {
      // Absent, or of another type: the patch value is taken as is — unless
      // it only lists deletions, which never add anything.
      if (!isDeleteList) setFromPatch(original, key, patchValue);
      continue;
    }
    if (patchKind === 'map') {
      original[key] = mergeMap(
        original[key] as JsonMap,
        patchValue as JsonMap,
        childPath(path, key),
        lists,
      );
    } else if (patchKind === 'list') {
      original[key] = mergeListField(
        original[key] as unknown[],
        patchValue as unknown[],
        childPath(path, key),
        lists,
        isDeleteList,
      ).merged;
    } else {
      original[key] = patchValue;
    }
  }
  return original;
}

/** What the real code does for a value it takes from the patch without merging. */
function setFromPatch(target: JsonMap, key: string, value: unknown): void {
  const kept = removeDirectives(withoutNulls(value));
  if (kept.keep) target[key] = kept.value;
  else delete target[key];
}

/**
 * A map carrying `$patch` inside a value that is added rather than merged is
 * dropped, with its key or list slot (real `removeDirectives`).
 */
function removeDirectives(v: unknown): { keep: boolean; value?: unknown } {
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    for (const item of v) {
      const r = removeDirectives(item);
      if (r.keep) out.push(r.value);
    }
    return { keep: true, value: out };
  }
  if (isMap(v)) {
    if (Object.hasOwn(v, DIRECTIVE)) return { keep: false };
    const out: JsonMap = {};
    for (const [k, item] of Object.entries(v)) {
      const r = removeDirectives(item);
      if (r.keep) out[k] = r.value;
    }
    return { keep: true, value: out };
  }
  return { keep: true, value: v };
}

/**
 * `null` in a value taken from the patch: the real merge drops it from added
 * keys, and the typed decode after the merge turns the rest into omitted
 * zero values, so a client never reads a `null` back.
 */
function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (isMap(v)) {
    const out: JsonMap = {};
    for (const [k, item] of Object.entries(v)) if (item !== null) out[k] = withoutNulls(item);
    return out;
  }
  return v;
}

function extractKey(key: string, prefix: string): string {
  const slash = key.indexOf('/');
  if (slash < 0 || key.slice(0, slash) !== prefix) {
    throw new ApiError(
      400,
      'BadRequest',
      prefix === DELETE_FROM_PRIMITIVE_LIST
        ? 'invalid patch format of primitive list'
        : 'invalid patch format of setElementOrder list',
    );
  }
  return key.slice(slash + 1);
}

/** `$retainKeys`: the keys of this map that survive; every key the patch sets must be among them. */
function applyRetainKeys(original: JsonMap, patch: JsonMap): void {
  if (!Object.hasOwn(patch, RETAIN_KEYS)) return;
  const retain = patch[RETAIN_KEYS];
  delete patch[RETAIN_KEYS];
  if (!Array.isArray(retain))
    throw new ApiError(400, 'BadRequest', 'invalid patch format of retainKeys');
  const kept = new Set<unknown>(retain);
  for (const [k, v] of Object.entries(patch)) {
    if (v === null || k.startsWith(DELETE_FROM_PRIMITIVE_LIST) || k.startsWith(SET_ELEMENT_ORDER))
      continue;
    if (!kept.has(k)) throw new ApiError(400, 'BadRequest', 'invalid patch format of retainKeys');
  }
  for (const k of Object.keys(original)) if (!kept.has(k)) delete original[k];
}

/**
 * `$setElementOrder/<field>`: merges `<field>` here (taking it out of the
 * patch) and then orders the result: the listed items in the listed order,
 * items only the server has keep their place relative to them.
 */
function applySetElementOrder(
  original: JsonMap,
  patch: JsonMap,
  path: string,
  lists: MergingLists,
): void {
  for (const directiveKey of Object.keys(patch)) {
    if (!directiveKey.startsWith(SET_ELEMENT_ORDER)) continue;
    const order = patch[directiveKey];
    delete patch[directiveKey];
    if (!Array.isArray(order)) throw unconverted(badArgType([], order));
    const field = extractKey(directiveKey, SET_ELEMENT_ORDER);
    const fieldPath = childPath(path, field);
    const mergeKey = lists[fieldPath]?.mergeKey ?? '';
    const inOriginal = Object.hasOwn(original, field);
    const inPatch = Object.hasOwn(patch, field);
    const originalList = inOriginal ? asList(original[field]) : [];
    const patchList = inPatch ? asList(patch[field]) : [];
    validatePatchAgainstOrder(patchList, order, mergeKey);
    if (!inOriginal && !inPatch) continue;

    let merged = originalList;
    let serverOrder = originalList;
    if (!inOriginal) merged = removeDirectives(withoutNulls(patchList)).value as unknown[];
    else if (inPatch)
      ({ merged, editedOriginal: serverOrder } = mergeListField(
        originalList,
        patchList,
        fieldPath,
        lists,
        false,
      ));

    const [listed, serverOnly] = mergeKey
      ? partitionMaps(merged, order, mergeKey)
      : partitionScalars(merged, order);
    const kind = elementKind(originalList, patchList);
    original[field] = normalizeOrder(listed, serverOnly, order, serverOrder, mergeKey, kind);
    delete patch[field];
  }
}

function asList(v: unknown): unknown[] {
  if (!Array.isArray(v)) throw unconverted(badArgType([], v));
  return v;
}

/** The patch's items must appear in `$setElementOrder` and in the same relative order. */
function validatePatchAgainstOrder(patchList: unknown[], order: unknown[], mergeKey: string): void {
  if (order.length === 0 || patchList.length === 0) return;
  const items = mergeKey ? patchList.filter((v) => !isDirective(v, 'delete', true)) : patchList;
  let p = 0;
  let o = 0;
  while (p < items.length && o < order.length) {
    if (isMap(items[p]) && Object.hasOwn(items[p] as JsonMap, DIRECTIVE)) {
      p++;
      continue;
    }
    if (sameMergeKey(items[p], order[o], mergeKey)) p++;
    o++;
  }
  if (p < items.length) {
    throw unconverted(
      `The order in patch list:\n${goFormat(patchList)}\n doesn't match ${SET_ELEMENT_ORDER} list:\n${goFormat(order)}\n`,
    );
  }
}

function isDirective(v: unknown, directive: string, requireMap: boolean): boolean {
  if (!isMap(v)) {
    if (requireMap) throw unconverted(badArgType({}, v));
    return false;
  }
  return v[DIRECTIVE] === directive;
}

function sameMergeKey(left: unknown, right: unknown, mergeKey: string): boolean {
  if (!mergeKey) return left === right;
  if (!isMap(left)) throw unconverted(badArgType({}, left));
  if (!isMap(right)) throw unconverted(badArgType({}, right));
  if (!Object.hasOwn(left, mergeKey)) throw noMergeKey(left, mergeKey);
  if (!Object.hasOwn(right, mergeKey)) throw noMergeKey(right, mergeKey);
  return left[mergeKey] === right[mergeKey];
}

interface ListMerge {
  merged: unknown[];
  /** The original list as the merge's in-place edits left it (see InPlaceList). */
  editedOriginal: unknown[];
}

/** A list field: merged when its type says so (or when the patch only lists deletions), else replaced. */
function mergeListField(
  original: unknown[],
  patch: unknown[],
  path: string,
  lists: MergingLists,
  isDeleteList: boolean,
): ListMerge {
  const strategy = lists[path];
  if (!strategy && !isDeleteList)
    return { merged: withoutNulls(patch) as unknown[], editedOriginal: original };
  return mergeList(original, patch, path, strategy?.mergeKey ?? '', lists, isDeleteList);
}

function mergeList(
  original: unknown[],
  patch: unknown[],
  path: string,
  mergeKey: string,
  lists: MergingLists,
  isDeleteList: boolean,
): ListMerge {
  if (original.length === 0 && patch.length === 0)
    return { merged: original, editedOriginal: original };
  const kind = elementKind(original, patch);
  if (kind !== 'map') {
    if (isDeleteList)
      return { merged: original.filter((v) => !patch.includes(v)), editedOriginal: original };
    // A set: duplicates the server already had go too, as in the real merge.
    const merged: unknown[] = [];
    for (const v of [...original, ...patch]) if (!merged.includes(v)) merged.push(v);
    const [fromPatch, serverOnly] = mergeKey
      ? partitionMaps(merged, patch, mergeKey)
      : partitionScalars(merged, patch);
    return {
      merged: normalizeOrder(fromPatch, serverOnly, patch, original, mergeKey, kind),
      editedOriginal: original,
    };
  }
  if (!mergeKey) throw unconverted(`cannot merge lists without merge key for ${path}`);
  const live = new InPlaceList(original);
  const { base, additions } = applySpecialElements(live, patch, mergeKey);
  const merged = [...base];
  for (const item of additions as JsonMap[]) {
    if (!Object.hasOwn(item, mergeKey)) throw noMergeKey(item, mergeKey);
    const at = merged.findIndex((m) => isMap(m) && m[mergeKey] === item[mergeKey]);
    if (at >= 0) {
      merged[at] = mergeMap(merged[at] as JsonMap, item, `${path}[]`, lists);
    } else {
      const added = withoutNulls(item);
      merged.push(added);
      live.append(added);
    }
  }
  const [fromPatch, serverOnly] = partitionMaps(merged, additions, mergeKey);
  return {
    merged: normalizeOrder(fromPatch, serverOnly, additions, base, mergeKey, kind),
    editedOriginal: live.backing,
  };
}

/**
 * The live list as the real merge edits it in memory: Go deletions compact
 * the object's array in place (leaving its old last element in the freed
 * tail) and appends fill that tail until it is full (the server decodes the
 * object with capacity equal to length). `$setElementOrder` later orders the
 * result against this edited array rather than the untouched original, which
 * decides where server-only items land next to new ones.
 */
class InPlaceList {
  readonly backing: unknown[];
  private length: number;
  private spilled = false;

  constructor(original: unknown[]) {
    this.backing = [...original];
    this.length = original.length;
  }

  items(): unknown[] {
    return this.backing.slice(0, this.length);
  }

  removeWhere(match: (v: unknown) => boolean): void {
    for (let i = 0; i < this.length;) {
      if (!match(this.backing[i])) {
        i++;
        continue;
      }
      this.backing.copyWithin(i, i + 1, this.length);
      this.length--;
    }
  }

  append(v: unknown): void {
    // Past capacity Go appends to a new array: the edited original stops changing.
    if (this.length >= this.backing.length) this.spilled = true;
    if (!this.spilled) this.backing[this.length] = v;
    this.length++;
  }
}

/**
 * List elements that are directives: `{$patch: delete, <key>: v}` removes
 * the element with that key; `{$patch: replace}` makes the rest of the patch
 * list the whole list. Returns the list to merge into and the patch items left to merge.
 */
function applySpecialElements(
  live: InPlaceList,
  patch: unknown[],
  mergeKey: string,
): { base: unknown[]; additions: unknown[] } {
  const plain: unknown[] = [];
  let replace = false;
  for (const v of patch as JsonMap[]) {
    if (!Object.hasOwn(v, DIRECTIVE)) {
      plain.push(v);
      continue;
    }
    const directive = v[DIRECTIVE];
    if (directive === 'delete') {
      if (!Object.hasOwn(v, mergeKey)) throw noMergeKey(v, mergeKey);
      live.removeWhere(
        (o) => isMap(o) && Object.hasOwn(o, mergeKey) && o[mergeKey] === v[mergeKey],
      );
    } else if (directive === 'replace') {
      replace = true;
    } else if (directive === 'merge') {
      throw unconverted('merging lists cannot yet be specified in the patch');
    } else {
      throw unconverted(`unknown patch type: ${goString(directive)} in map: ${goFormat(v)}`);
    }
  }
  if (replace) return { base: withoutNulls(plain) as unknown[], additions: [] };
  return { base: live.items(), additions: plain };
}

/** All elements of both lists share one JSON type, and none is a list. */
function elementKind(...slices: unknown[][]): ValueKind {
  let kind: ValueKind | undefined;
  for (const s of slices) {
    for (const v of s) {
      const k = kindOf(v);
      if (kind === undefined) {
        if (k === 'list') {
          // mergepatch.ErrNoListOfLists, which the server turns into a bare 422.
          throw new ApiError(
            422,
            'Invalid',
            'the server rejected our request due to an error in our request',
          );
        }
        kind = k;
      } else if (k !== kind) {
        throw unconverted(`list element types are not identical: ${goFormat(slices)}`);
      }
    }
  }
  if (kind === undefined) throw unconverted('no elements in any of the given slices');
  return kind;
}

function partitionScalars(merged: unknown[], by: unknown[]): [unknown[], unknown[]] {
  const inPatch: unknown[] = [];
  const serverOnly: unknown[] = [];
  for (const v of merged) (by.some((b) => deepEqual(b, v)) ? inPatch : serverOnly).push(v);
  return [inPatch, serverOnly];
}

function partitionMaps(merged: unknown[], by: unknown[], mergeKey: string): [unknown[], unknown[]] {
  const inPatch: unknown[] = [];
  const serverOnly: unknown[] = [];
  for (const v of merged) {
    if (!isMap(v)) throw unconverted(badArgType({}, v));
    if (!Object.hasOwn(v, mergeKey)) throw noMergeKey(v, mergeKey);
    const found = by.some((b) => {
      if (!isMap(b)) throw unconverted(badArgType({}, b));
      return Object.hasOwn(b, mergeKey) && b[mergeKey] === v[mergeKey];
    });
    (found ? inPatch : serverOnly).push(v);
  }
  return [inPatch, serverOnly];
}

/**
 * The real merge's ordering: items from the patch in the patch's order,
 * server-only items in the server's order, interleaved so that a
 * server-only item stays before a patch item it preceded on the server.
 * Patch items the server did not have come before any server-only item
 * that is not known to precede them — so, without `$setElementOrder`, new
 * items land first.
 */
function normalizeOrder(
  fromPatch: unknown[],
  serverOnly: unknown[],
  patchOrder: unknown[],
  serverOrder: unknown[],
  mergeKey: string,
  kind: ValueKind,
): unknown[] {
  const identity = (v: unknown): unknown =>
    kind === 'map' ? (isMap(v) ? v[mergeKey] : undefined) : v;
  if (kind === 'map') {
    for (const list of [fromPatch, patchOrder, serverOnly, serverOrder]) {
      for (const item of list) {
        if (!isMap(item)) throw unconverted(badArgType({}, item));
        if (!Object.hasOwn(item, mergeKey)) throw noMergeKey(item, mergeKey);
      }
    }
  }
  const indexIn = (list: unknown[], v: unknown): number => {
    const id = identity(v);
    return list.findIndex((x) => deepEqual(identity(x), id));
  };
  const sortBy = (items: unknown[], order: unknown[]): unknown[] => {
    const found = items.filter((v) => indexIn(order, v) >= 0);
    const sorted = [...found].sort((a, b) => indexIn(order, a) - indexIn(order, b));
    let next = 0;
    // Items missing from `order` keep their slots; only the found ones are reordered.
    return items.map((v) => (indexIn(order, v) >= 0 ? sorted[next++] : v));
  };
  const right = sortBy(fromPatch, patchOrder);
  const left = sortBy(serverOnly, serverOrder);
  const out: unknown[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length || j < right.length) {
    if (j >= right.length) out.push(left[i++]);
    else if (i >= left.length) out.push(right[j++]);
    else {
      const li = indexIn(serverOrder, left[i]);
      const ri = indexIn(serverOrder, right[j]);
      if (li >= 0 && ri >= 0 && li < ri) out.push(left[i++]);
      else out.push(right[j++]);
    }
  }
  return out;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** An error the real API server passes through unconverted: 500 with no reason. */
function unconverted(message: string): ApiError {
  return new ApiError(500, '', message);
}

function noMergeKey(m: JsonMap, mergeKey: string): ApiError {
  return unconverted(`map: ${goFormat(m)} does not contain declared merge key: ${mergeKey}`);
}

function badArgType(expected: unknown[] | JsonMap, actual: unknown): string {
  return `expected a ${goTypeName(expected)}, but received a ${goTypeName(actual)}`;
}

function goTypeName(v: unknown): string {
  switch (kindOf(v)) {
    case 'map':
      return 'map[string]interface {}';
    case 'list':
      return '[]interface {}';
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(v) ? 'int64' : 'float64';
    case 'null':
      return '%!s(<nil>)';
  }
}

function goJsonKind(v: unknown): string {
  const k = kindOf(v);
  if (k === 'list') return 'array';
  if (k === 'boolean') return 'bool';
  return k;
}

/** Go's `%s` of a decoded JSON value. */
function goString(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return `%!s(${goTypeName(v)}=${v})`;
  if (typeof v === 'boolean') return `%!s(bool=${v})`;
  return goFormat(v);
}

/** Go's `%v` of a decoded JSON value (maps print with sorted keys). */
function goFormat(v: unknown): string {
  if (v === null || v === undefined) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(goFormat).join(' ')}]`;
  if (isMap(v)) {
    const keys = Object.keys(v).sort();
    return `map[${keys.map((k) => `${k}:${goFormat(v[k])}`).join(' ')}]`;
  }
  return String(v);
}
