import { isDeepStrictEqual } from 'node:util';
import { ApiError } from './store.js';

/**
 * RFC 6902 JSON patch (`application/json-patch+json`), which the API server
 * accepts on every kind, custom resources included. As there, a body that is
 * not a list of operations is 400 BadRequest and an operation that cannot
 * apply (a missing path, a failed `test`) is 422 with the reason.
 */
interface Operation {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
}

type Container = Record<string, unknown> | unknown[];

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw unprocessable(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function unprocessable(message: string): ApiError {
  return new ApiError(422, 'Invalid', message);
}

/** The container holding the last segment of `path`, and that segment. */
function parentOf(doc: unknown, path: string): { parent: Container; key: string } {
  const segments = pointer(path);
  if (segments.length === 0) throw unprocessable(`the root cannot be the target of this operation`);
  let node: unknown = doc;
  for (const seg of segments.slice(0, -1)) {
    node = Array.isArray(node)
      ? node[Number(seg)]
      : (node as Record<string, unknown> | null)?.[seg];
    if (node === null || typeof node !== 'object')
      throw unprocessable(`doc is missing path: "${path}": missing value`);
  }
  return { parent: node as Container, key: segments.at(-1)! };
}

function arrayIndex(arr: unknown[], key: string, path: string, forInsert: boolean): number {
  if (forInsert && key === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(key))
    throw unprocessable(`invalid array index "${key}" in "${path}"`);
  const i = Number(key);
  if (i > arr.length || (!forInsert && i === arr.length))
    throw unprocessable(`index out of bounds: ${i} in "${path}"`);
  return i;
}

function read(doc: unknown, path: string): unknown {
  if (path === '') return doc;
  const { parent, key } = parentOf(doc, path);
  const value = Array.isArray(parent) ? parent[arrayIndex(parent, key, path, false)] : parent[key];
  if (value === undefined) throw unprocessable(`doc is missing path: "${path}": missing value`);
  return value;
}

function add(doc: unknown, path: string, value: unknown): unknown {
  if (path === '') return value;
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, true), 0, value);
  else parent[key] = value;
  return doc;
}

function remove(doc: unknown, path: string): unknown {
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, false), 1);
  else {
    if (!(key in parent)) throw unprocessable(`doc is missing path: "${path}": missing value`);
    delete parent[key];
  }
  return doc;
}

export function jsonPatch(target: unknown, text: string): unknown {
  let ops: unknown;
  try {
    ops = JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, 'BadRequest', (err as Error).message);
  }
  if (!Array.isArray(ops))
    throw new ApiError(
      400,
      'BadRequest',
      'json: cannot unmarshal object into Go value of type jsonpatch.Patch',
    );
  let doc = structuredClone(target);
  for (const raw of ops as Operation[]) {
    if (!raw || typeof raw !== 'object' || typeof raw.path !== 'string')
      throw unprocessable('Unexpected kind: missing path');
    const { op, path } = raw;
    switch (op) {
      case 'add':
        doc = add(doc, path, structuredClone(raw.value));
        break;
      case 'remove':
        doc = remove(doc, path);
        break;
      case 'replace':
        read(doc, path);
        doc =
          path === ''
            ? structuredClone(raw.value)
            : add(remove(doc, path), path, structuredClone(raw.value));
        break;
      case 'move': {
        const value = read(doc, raw.from ?? '');
        doc = add(remove(doc, raw.from ?? ''), path, value);
        break;
      }
      case 'copy':
        doc = add(doc, path, structuredClone(read(doc, raw.from ?? '')));
        break;
      case 'test':
        if (!isDeepStrictEqual(read(doc, path), raw.value))
          throw unprocessable(`testing value ${path} failed: test failed`);
        break;
      default:
        throw unprocessable(`Unexpected kind: ${String(op)}`);
    }
  }
  return doc;
}
