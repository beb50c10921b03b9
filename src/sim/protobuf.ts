import { ApiError, type Obj } from './store.js';

/**
 * Request bodies in Kubernetes' protobuf encoding
 * (`application/vnd.kubernetes.protobuf`), which kubectl's typed clients
 * send for built-in kinds (`create namespace`, `auth can-i`, `create
 * token`, …): the `k8s\0` magic, then a `runtime.Unknown` envelope whose
 * `raw` field holds the object. Decoded into the JSON form the rest of the
 * sim handles, for the kinds kubectl creates with typed clients. Answers
 * are always JSON, which those clients accept too.
 */
type Scalar = 'string' | 'bytes' | 'int' | 'bool' | 'quantity' | 'intOrString';
type FieldKind = Scalar | Message | { repeated: Scalar | Message } | { map: Scalar };
interface Message {
  [field: number]: [name: string, kind: FieldKind];
}

const MAGIC = Buffer.from('k8s\u0000', 'latin1');

const TYPE_META: Message = { 1: ['apiVersion', 'string'], 2: ['kind', 'string'] };
const UNKNOWN: Message = { 1: ['typeMeta', TYPE_META], 2: ['raw', 'bytes'] };
const OWNER_REFERENCE: Message = {
  1: ['kind', 'string'],
  3: ['name', 'string'],
  4: ['uid', 'string'],
  5: ['apiVersion', 'string'],
  6: ['controller', 'bool'],
  7: ['blockOwnerDeletion', 'bool'],
};
const OBJECT_META: Message = {
  1: ['name', 'string'],
  2: ['generateName', 'string'],
  3: ['namespace', 'string'],
  5: ['uid', 'string'],
  6: ['resourceVersion', 'string'],
  11: ['labels', { map: 'string' }],
  12: ['annotations', { map: 'string' }],
  13: ['ownerReferences', { repeated: OWNER_REFERENCE }],
  14: ['finalizers', { repeated: 'string' }],
};
const RESOURCE_ATTRIBUTES: Message = {
  1: ['namespace', 'string'],
  2: ['verb', 'string'],
  3: ['group', 'string'],
  4: ['version', 'string'],
  5: ['resource', 'string'],
  6: ['subresource', 'string'],
  7: ['name', 'string'],
};
const NON_RESOURCE_ATTRIBUTES: Message = { 1: ['path', 'string'], 2: ['verb', 'string'] };
const LOCAL_OBJECT_REFERENCE: Message = { 1: ['name', 'string'] };
const POLICY_RULE: Message = {
  1: ['verbs', { repeated: 'string' }],
  2: ['apiGroups', { repeated: 'string' }],
  3: ['resources', { repeated: 'string' }],
  4: ['resourceNames', { repeated: 'string' }],
  5: ['nonResourceURLs', { repeated: 'string' }],
};
const BINDING: Message = {
  1: ['metadata', OBJECT_META],
  2: [
    'subjects',
    {
      repeated: {
        1: ['kind', 'string'],
        2: ['apiGroup', 'string'],
        3: ['name', 'string'],
        4: ['namespace', 'string'],
      },
    },
  ],
  3: ['roleRef', { 1: ['apiGroup', 'string'], 2: ['kind', 'string'], 3: ['name', 'string'] }],
};
const SERVICE_PORT: Message = {
  1: ['name', 'string'],
  2: ['protocol', 'string'],
  3: ['port', 'int'],
  4: ['targetPort', 'intOrString'],
  5: ['nodePort', 'int'],
};

/** The kinds kubectl sends with typed clients, by `apiVersion/kind`. */
const KINDS: Record<string, Message> = {
  'v1/Namespace': {
    1: ['metadata', OBJECT_META],
    2: ['spec', { 1: ['finalizers', { repeated: 'string' }] }],
  },
  'v1/ConfigMap': {
    1: ['metadata', OBJECT_META],
    2: ['data', { map: 'string' }],
    3: ['binaryData', { map: 'bytes' }],
    4: ['immutable', 'bool'],
  },
  'v1/Secret': {
    1: ['metadata', OBJECT_META],
    2: ['data', { map: 'bytes' }],
    3: ['type', 'string'],
    4: ['stringData', { map: 'string' }],
    5: ['immutable', 'bool'],
  },
  'v1/Service': {
    1: ['metadata', OBJECT_META],
    2: [
      'spec',
      {
        1: ['ports', { repeated: SERVICE_PORT }],
        2: ['selector', { map: 'string' }],
        3: ['clusterIP', 'string'],
        4: ['type', 'string'],
        5: ['externalIPs', { repeated: 'string' }],
        7: ['sessionAffinity', 'string'],
        11: ['externalName', 'string'],
      },
    ],
  },
  'v1/ResourceQuota': {
    1: ['metadata', OBJECT_META],
    2: ['spec', { 1: ['hard', { map: 'quantity' }], 2: ['scopes', { repeated: 'string' }] }],
  },
  'rbac.authorization.k8s.io/v1/Role': {
    1: ['metadata', OBJECT_META],
    2: ['rules', { repeated: POLICY_RULE }],
  },
  'rbac.authorization.k8s.io/v1/ClusterRole': {
    1: ['metadata', OBJECT_META],
    2: ['rules', { repeated: POLICY_RULE }],
  },
  'rbac.authorization.k8s.io/v1/RoleBinding': BINDING,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': BINDING,
  'v1/ServiceAccount': {
    1: ['metadata', OBJECT_META],
    3: ['imagePullSecrets', { repeated: LOCAL_OBJECT_REFERENCE }],
    4: ['automountServiceAccountToken', 'bool'],
  },
  'authorization.k8s.io/v1/SelfSubjectAccessReview': {
    1: ['metadata', OBJECT_META],
    2: [
      'spec',
      {
        1: ['resourceAttributes', RESOURCE_ATTRIBUTES],
        2: ['nonResourceAttributes', NON_RESOURCE_ATTRIBUTES],
      },
    ],
  },
  'authorization.k8s.io/v1/SelfSubjectRulesReview': {
    1: ['metadata', OBJECT_META],
    2: ['spec', { 1: ['namespace', 'string'] }],
  },
  'authentication.k8s.io/v1/SelfSubjectReview': { 1: ['metadata', OBJECT_META] },
  'authentication.k8s.io/v1/TokenRequest': {
    1: ['metadata', OBJECT_META],
    2: [
      'spec',
      {
        1: ['audiences', { repeated: 'string' }],
        3: [
          'boundObjectRef',
          {
            1: ['kind', 'string'],
            2: ['apiVersion', 'string'],
            3: ['name', 'string'],
            4: ['uid', 'string'],
          },
        ],
        4: ['expirationSeconds', 'int'],
      },
    ],
  },
};

interface RawField {
  no: number;
  wire: number;
  value: bigint | Buffer;
}

function readVarint(buf: Buffer, at: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = at; i < buf.length; i++) {
    const b = buf[i]!;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [result, i + 1];
    shift += 7n;
  }
  throw malformed('truncated varint');
}

function readFields(buf: Buffer): RawField[] {
  const out: RawField[] = [];
  let at = 0;
  while (at < buf.length) {
    const [key, next] = readVarint(buf, at);
    at = next;
    const no = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) {
      const [v, n] = readVarint(buf, at);
      out.push({ no, wire, value: v });
      at = n;
    } else if (wire === 2) {
      const [len, n] = readVarint(buf, at);
      const end = n + Number(len);
      if (end > buf.length) throw malformed('truncated field');
      out.push({ no, wire, value: buf.subarray(n, end) });
      at = end;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw malformed(`unsupported wire type ${wire}`);
  }
  return out;
}

function malformed(why: string): ApiError {
  return new ApiError(
    400,
    'BadRequest',
    `the body of the request was in an unknown format: ${why}`,
  );
}

function scalar(kind: Scalar, f: RawField): unknown {
  switch (kind) {
    case 'string':
      return (f.value as Buffer).toString('utf8');
    case 'bytes':
      return (f.value as Buffer).toString('base64');
    case 'int':
      return Number(BigInt.asIntN(64, f.value as bigint));
    case 'bool':
      return f.value !== 0n;
    case 'quantity':
      return decodeMessage(f.value as Buffer, { 1: ['string', 'string'] }).string ?? '0';
    case 'intOrString': {
      const v = decodeMessage(f.value as Buffer, {
        1: ['type', 'int'],
        2: ['intVal', 'int'],
        3: ['strVal', 'string'],
      });
      return v.type === 1 ? (v.strVal ?? '') : (v.intVal ?? 0);
    }
  }
}

function decodeMessage(buf: Buffer, schema: Message): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of readFields(buf)) {
    const entry = schema[f.no];
    if (!entry) continue; // Fields the sim does not read (status, managedFields, …).
    const [name, kind] = entry;
    if (typeof kind === 'string') {
      // Go's JSON leaves empty strings out (omitempty); the proto always carries them.
      const value = scalar(kind, f);
      if (value !== '') out[name] = value;
    } else if ('repeated' in kind) {
      const item = kind.repeated;
      const value =
        typeof item === 'string' ? scalar(item, f) : decodeMessage(f.value as Buffer, item);
      out[name] = [...((out[name] as unknown[] | undefined) ?? []), value];
    } else if ('map' in kind) {
      const e = decodeMessage(f.value as Buffer, { 1: ['key', 'string'], 2: ['value', kind.map] });
      out[name] = {
        ...(out[name] as Record<string, unknown> | undefined),
        [String(e.key)]: e.value ?? '',
      };
    } else out[name] = decodeMessage(f.value as Buffer, kind as Message);
  }
  return out;
}

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';

/** Decodes a protobuf request body into its JSON object form. */
export function decodeProtobuf(body: Buffer): Obj {
  if (body.length < MAGIC.length || !body.subarray(0, MAGIC.length).equals(MAGIC))
    throw malformed('no protobuf magic');
  const envelope = decodeMessage(body.subarray(MAGIC.length), UNKNOWN);
  const typeMeta = (envelope.typeMeta ?? {}) as { apiVersion?: string; kind?: string };
  const key = `${typeMeta.apiVersion}/${typeMeta.kind}`;
  const schema = KINDS[key];
  if (!schema)
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      `the sim decodes protobuf only for ${Object.keys(KINDS).join(', ')}; send ${typeMeta.kind ?? 'this object'} as application/json`,
    );
  const raw = Buffer.from(String(envelope.raw ?? ''), 'base64');
  const obj = decodeMessage(raw, schema);
  return {
    apiVersion: typeMeta.apiVersion,
    kind: typeMeta.kind,
    ...obj,
    metadata: (obj.metadata as Obj['metadata'] | undefined) ?? {},
  } as Obj;
}
