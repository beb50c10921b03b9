import { JSONPath } from 'jsonpath-plus';
import type { Obj, ResourceType } from './store.js';

/**
 * Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
 * what `kubectl get` asks for: the columns of Kubernetes' own printers
 * (pkg/printers/internalversion) for built-in kinds, and for KubeVirt's
 * CRDs the `additionalPrinterColumns` virt-operator installs them with.
 * Priority-1 columns are what `-o wide` adds.
 */
interface Column {
  name: string;
  type: 'string' | 'integer' | 'date';
  format?: string;
  description: string;
  priority?: number;
  cell(o: Obj, now: number): unknown;
}

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** apimachinery's `duration.HumanDuration`, as the AGE column prints it. */
export function humanDuration(ms: number): string {
  if (ms < -1000) return '<invalid>';
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8)
    return hours % 24 === 0 ? `${hours / 24}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const years = Math.floor(hours / 24 / 365);
  if (hours < 24 * 365 * 8) {
    const days = Math.floor(hours / 24) % 365;
    return days === 0 ? `${years}y` : `${years}y${days}d`;
  }
  return `${years}y`;
}

const since = (t: string | undefined, now: number) =>
  t ? humanDuration(now - Date.parse(t)) : '<unknown>';
const orNone = (v: unknown) => (v === undefined || v === null || v === '' ? '<none>' : String(v));

const NAME: Column = {
  name: 'Name',
  type: 'string',
  format: 'name',
  description:
    'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names',
  cell: (o) => o.metadata.name,
};
const AGE: Column = {
  name: 'Age',
  type: 'string',
  description:
    'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata',
  cell: (o, now) => since(o.metadata.creationTimestamp, now),
};
const CREATED_AT: Column = {
  name: 'Created At',
  type: 'date',
  description:
    'CreationTimestamp is a timestamp representing the server time when this object was created.',
  cell: (o) => o.metadata.creationTimestamp,
};
const col = (name: string, cell: Column['cell'], extra: Partial<Column> = {}): Column => ({
  name,
  type: 'string',
  description: '',
  cell,
  ...extra,
});
const wide = (name: string, cell: Column['cell']): Column => col(name, cell, { priority: 1 });

function podStatus(pod: Any): { ready: string; reason: string; restarts: string } {
  const statuses: Any[] = pod.status?.containerStatuses ?? [];
  const total = (pod.spec?.containers ?? []).length;
  const ready = statuses.filter((s) => s.ready).length;
  let reason: string = pod.status?.reason ?? pod.status?.phase ?? 'Unknown';
  for (const s of statuses) {
    const waiting = s.state?.waiting?.reason;
    const terminated = s.state?.terminated?.reason;
    if (waiting && waiting !== 'PodInitializing') reason = waiting;
    else if (terminated) reason = terminated;
  }
  if (pod.metadata?.deletionTimestamp) reason = 'Terminating';
  const restarts = statuses.reduce((n, s) => n + (s.restartCount ?? 0), 0);
  return { ready: `${ready}/${total}`, reason, restarts: String(restarts) };
}

function servicePorts(svc: Any): string {
  const ports: Any[] = svc.spec?.ports ?? [];
  if (ports.length === 0) return '<none>';
  return ports
    .map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`)
    .join(',');
}

function selectorString(sel: Record<string, string> | undefined): string {
  const entries = Object.entries(sel ?? {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '<none>';
}

function labelSelectorString(sel: Any | undefined): string {
  const parts = Object.entries((sel?.matchLabels ?? {}) as Record<string, string>).map(
    ([k, v]) => `${k}=${v}`,
  );
  for (const e of (sel?.matchExpressions ?? []) as Any[]) {
    const values = (e.values ?? []).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${values})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${values})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.length ? parts.join(',') : '<none>';
}

const nodeRoles = (node: Any) =>
  Object.keys(node.metadata?.labels ?? {})
    .filter((k) => k.startsWith('node-role.kubernetes.io/'))
    .map((k) => k.slice('node-role.kubernetes.io/'.length))
    .sort()
    .join(',') || '<none>';

const nodeReady = (node: Any) => {
  const c = ((node.status?.conditions ?? []) as Any[]).find((x) => x.type === 'Ready');
  const base = c?.status === 'True' ? 'Ready' : 'NotReady';
  return node.spec?.unschedulable ? `${base},SchedulingDisabled` : base;
};

const nodeAddress = (node: Any, type: string) =>
  orNone(((node.status?.addresses ?? []) as Any[]).find((a) => a.type === type)?.address);

const quotaPairs = (q: Any, prefix: 'requests' | 'limits') => {
  const hard = (q.status?.hard ?? {}) as Record<string, string>;
  const used = (q.status?.used ?? {}) as Record<string, string>;
  return Object.keys(hard)
    .filter((k) => (prefix === 'limits' ? k.startsWith('limits.') : !k.startsWith('limits.')))
    .sort()
    .map((k) => `${k}: ${used[k] ?? '0'}/${hard[k]}`)
    .join(', ');
};

const subjectsOf = (b: Any, kind: string) =>
  orNone(
    ((b.subjects ?? []) as Any[])
      .filter((s) => s.kind === kind)
      .map((s) => (kind === 'ServiceAccount' ? `${s.namespace ?? ''}/${s.name}` : s.name))
      .join(', '),
  );

const BINDING: Column[] = [
  NAME,
  col('Role', (b) => `${(b as Any).roleRef?.kind}/${(b as Any).roleRef?.name}`),
  AGE,
  wide('Users', (b) => subjectsOf(b, 'User')),
  wide('Groups', (b) => subjectsOf(b, 'Group')),
  wide('ServiceAccounts', (b) => subjectsOf(b, 'ServiceAccount')),
];

/**
 * KubeVirt's printer columns. The reference schemas hold only each CRD's
 * openAPIV3Schema, so the columns virt-operator declares (AGE STATUS READY
 * for VMs; AGE PHASE IP NODENAME READY, and LIVE-MIGRATABLE PAUSED wide,
 * for VMIs) are stated here as JSONPaths, evaluated like the API server's
 * CRD table convertor does.
 */
interface PrinterColumn {
  name: string;
  type: 'string' | 'date' | 'integer' | 'boolean';
  jsonPath: string;
  priority?: number;
}
const VM_COLUMNS: PrinterColumn[] = [
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  { name: 'Status', type: 'string', jsonPath: '.status.printableStatus' },
  { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
];
const VMI_COLUMNS: PrinterColumn[] = [
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
  { name: 'IP', type: 'string', jsonPath: '.status.interfaces[0].ipAddress' },
  { name: 'NodeName', type: 'string', jsonPath: '.status.nodeName' },
  { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
  {
    name: 'Live-Migratable',
    type: 'string',
    jsonPath: ".status.conditions[?(@.type=='LiveMigratable')].status",
    priority: 1,
  },
  {
    name: 'Paused',
    type: 'string',
    jsonPath: ".status.conditions[?(@.type=='Paused')].status",
    priority: 1,
  },
];

const KUBEVIRT_COLUMNS: PrinterColumn[] = [
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
];

function printerColumns(columns: PrinterColumn[]): Column[] {
  return [
    NAME,
    ...columns.map((c): Column => ({
      name: c.name,
      type: c.type === 'boolean' ? 'string' : c.type,
      description: '',
      ...(c.priority ? { priority: c.priority } : {}),
      cell: (o, now) => {
        // The CRD convertor prints the first value found, or nothing.
        const found = JSONPath({ path: `$${c.jsonPath}`, json: o, wrap: true }) as unknown[];
        if (!found.length) return null;
        // Date columns come out as an age, as the CRD convertor's `ConvertToHumanReadableDateType`.
        if (c.type === 'date' && typeof found[0] === 'string') return since(found[0], now);
        return found[0];
      },
    })),
  ];
}

const COLUMNS: Record<string, Column[]> = {
  '/namespaces': [NAME, col('Status', (o) => (o as Any).status?.phase), AGE],
  '/nodes': [
    NAME,
    col('Status', (o) => nodeReady(o)),
    col('Roles', (o) => nodeRoles(o)),
    AGE,
    col('Version', (o) => (o as Any).status?.nodeInfo?.kubeletVersion ?? ''),
    wide('Internal-IP', (o) => nodeAddress(o, 'InternalIP')),
    wide('External-IP', (o) => nodeAddress(o, 'ExternalIP')),
    wide('OS-Image', (o) => (o as Any).status?.nodeInfo?.osImage ?? '<unknown>'),
    wide('Kernel-Version', (o) => (o as Any).status?.nodeInfo?.kernelVersion ?? '<unknown>'),
    wide(
      'Container-Runtime',
      (o) => (o as Any).status?.nodeInfo?.containerRuntimeVersion ?? '<unknown>',
    ),
  ],
  '/secrets': [
    NAME,
    col('Type', (o) => (o as Any).type ?? 'Opaque'),
    col('Data', (o) => Object.keys((o as Any).data ?? {}).length, { type: 'integer' }),
    AGE,
  ],
  '/configmaps': [
    NAME,
    col(
      'Data',
      (o) =>
        Object.keys((o as Any).data ?? {}).length + Object.keys((o as Any).binaryData ?? {}).length,
      { type: 'integer' },
    ),
    AGE,
  ],
  '/services': [
    NAME,
    col('Type', (o) => (o as Any).spec?.type ?? 'ClusterIP'),
    col('Cluster-IP', (o) => orNone((o as Any).spec?.clusterIP)),
    col('External-IP', (o) => {
      const s = o as Any;
      const ips = [
        ...((s.status?.loadBalancer?.ingress ?? []) as Any[]).map((i) => i.ip ?? i.hostname),
        ...((s.spec?.externalIPs ?? []) as string[]),
      ];
      if (ips.length) return ips.join(',');
      return s.spec?.type === 'LoadBalancer' ? '<pending>' : '<none>';
    }),
    col('Port(s)', (o) => servicePorts(o)),
    AGE,
    wide('Selector', (o) => selectorString((o as Any).spec?.selector)),
  ],
  '/pods': [
    NAME,
    col('Ready', (o) => podStatus(o).ready),
    col('Status', (o) => podStatus(o).reason),
    col('Restarts', (o) => podStatus(o).restarts),
    AGE,
    wide('IP', (o) => orNone((o as Any).status?.podIP)),
    wide('Node', (o) => orNone((o as Any).spec?.nodeName)),
    wide('Nominated Node', (o) => orNone((o as Any).status?.nominatedNodeName)),
    wide('Readiness Gates', (o) => {
      const gates = ((o as Any).spec?.readinessGates ?? []) as Any[];
      return gates.length ? `0/${gates.length}` : '<none>';
    }),
  ],
  '/events': [
    col('Last Seen', (o, now) =>
      since((o as Any).lastTimestamp ?? (o as Any).eventTime ?? o.metadata.creationTimestamp, now),
    ),
    col('Type', (o) => (o as Any).type),
    col('Reason', (o) => (o as Any).reason),
    col('Object', (o) => {
      const io = (o as Any).involvedObject ?? {};
      return `${String(io.kind ?? '').toLowerCase()}/${io.name ?? ''}`;
    }),
    wide('Subobject', (o) => (o as Any).involvedObject?.fieldPath ?? ''),
    wide('Source', (o) => {
      const s = (o as Any).source ?? {};
      return s.host
        ? `${s.component}, ${s.host}`
        : (s.component ?? (o as Any).reportingComponent ?? '');
    }),
    col('Message', (o) => (o as Any).message ?? ''),
    wide('First Seen', (o, now) =>
      since((o as Any).firstTimestamp ?? o.metadata.creationTimestamp, now),
    ),
    wide('Count', (o) => (o as Any).count ?? 1),
    wide('Name', (o) => o.metadata.name),
  ],
  '/resourcequotas': [
    NAME,
    AGE,
    col('Request', (o) => quotaPairs(o, 'requests')),
    col('Limit', (o) => quotaPairs(o, 'limits')),
  ],
  '/limitranges': [NAME, CREATED_AT],
  '/serviceaccounts': [
    NAME,
    col('Secrets', (o) => ((o as Any).secrets ?? []).length, { type: 'integer' }),
    AGE,
  ],
  'networking.k8s.io/networkpolicies': [
    NAME,
    col('Pod-Selector', (o) => labelSelectorString((o as Any).spec?.podSelector)),
    AGE,
  ],
  'rbac.authorization.k8s.io/roles': [NAME, CREATED_AT],
  'rbac.authorization.k8s.io/clusterroles': [NAME, CREATED_AT],
  'rbac.authorization.k8s.io/rolebindings': BINDING,
  'rbac.authorization.k8s.io/clusterrolebindings': BINDING,
  'kubevirt.io/virtualmachines': printerColumns(VM_COLUMNS),
  'kubevirt.io/virtualmachineinstances': printerColumns(VMI_COLUMNS),
  'kubevirt.io/kubevirts': printerColumns(KUBEVIRT_COLUMNS),
};

/** Whether the Accept header asks for a meta.k8s.io Table (kubectl get). */
export function wantsTable(accept: string | undefined): boolean {
  return (accept ?? '')
    .split(',')
    .some((part) => /;\s*as=Table/.test(part) && /g=meta\.k8s\.io/.test(part));
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** A `meta.k8s.io/v1` Table of objects of one type. */
export function toTable(
  type: ResourceType,
  objects: Obj[],
  listMeta: Record<string, unknown>,
  includeObject: IncludeObject = 'Metadata',
): Record<string, unknown> {
  const columns = COLUMNS[`${type.group}/${type.plural}`] ?? [NAME, AGE];
  const now = Date.now();
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: listMeta,
    columnDefinitions: columns.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? '',
      description: c.description,
      priority: c.priority ?? 0,
    })),
    rows: objects.map((o) => ({
      cells: columns.map((c) => c.cell(o, now) ?? null),
      object:
        includeObject === 'None'
          ? null
          : includeObject === 'Object'
            ? o
            : {
                kind: 'PartialObjectMetadata',
                apiVersion: 'meta.k8s.io/v1',
                metadata: o.metadata,
              },
    })),
  };
}

export function includeObjectOf(value: string | null): IncludeObject {
  return value === 'None' || value === 'Object' ? value : 'Metadata';
}
