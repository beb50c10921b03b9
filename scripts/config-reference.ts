import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { z } from 'zod';
import { CONFIG_ENV_OVERRIDES, configSchema } from '../src/config/index.js';

/**
 * docs/config-reference.md, generated from the config schema itself: every
 * key with its type and default (zod's JSON Schema of the input), the
 * environment variable that sets it (CONFIG_ENV_OVERRIDES) and its
 * description (the doc comment above the key in src/config/schema.ts).
 * `npm run docs:reference` rewrites it; test/config/reference.test.ts fails
 * when it is out of date.
 */
const ROOT = join(import.meta.dirname, '..');
const SCHEMA_FILE = join(ROOT, 'src', 'config', 'schema.ts');
export const REFERENCE_FILE = join(ROOT, 'docs', 'config-reference.md');

type JsonSchema = {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  propertyNames?: JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
  required?: string[];
};

/** Doc comments of the schema's keys, by path (`pool.jobLockSeconds`, `flavors.<name>.nodes`). */
function descriptions(): Map<string, string> {
  const source = ts.createSourceFile(
    SCHEMA_FILE,
    readFileSync(SCHEMA_FILE, 'utf8'),
    ts.ScriptTarget.Latest,
    true,
  );
  const declarations = new Map<string, ts.Expression>();
  source.forEachChild((node) => {
    if (!ts.isVariableStatement(node)) return;
    for (const d of node.declarationList.declarations) {
      if (ts.isIdentifier(d.name) && d.initializer) declarations.set(d.name.text, d.initializer);
    }
  });
  const out = new Map<string, string>();
  const docOf = (node: ts.Node): string | undefined => {
    const docs = ts.getJSDocCommentsAndTags(node).filter(ts.isJSDoc);
    const text = docs.map((d) => ts.getTextOfJSDocComment(d.comment) ?? '').join(' ');
    return text.replace(/\s+/g, ' ').trim() || undefined;
  };
  /** Finds the object literal (or record/array element schema) a schema expression is built from. */
  const visit = (expr: ts.Node, path: string, seen: Set<string>): void => {
    if (ts.isIdentifier(expr)) {
      const init = declarations.get(expr.text);
      if (init && !seen.has(expr.text)) visit(init, path, new Set([...seen, expr.text]));
      return;
    }
    if (ts.isCallExpression(expr)) {
      const callee = expr.expression;
      const method = ts.isPropertyAccessExpression(callee) ? callee.name.text : '';
      if (method === 'strictObject' || method === 'object') {
        const literal = expr.arguments[0];
        if (literal && ts.isObjectLiteralExpression(literal)) {
          for (const prop of literal.properties) {
            if (!ts.isPropertyAssignment(prop)) continue;
            const key = prop.name.getText(source).replace(/^['"]|['"]$/g, '');
            const keyPath = path ? `${path}.${key}` : key;
            const doc = docOf(prop);
            if (doc) out.set(keyPath, doc);
            visit(prop.initializer, keyPath, seen);
          }
        }
        return;
      }
      if (method === 'record') {
        if (expr.arguments[1]) visit(expr.arguments[1], `${path}.<name>`, seen);
        return;
      }
      if (method === 'array') {
        if (expr.arguments[0]) visit(expr.arguments[0], `${path}[]`, seen);
        return;
      }
      // A chain (`.default(…)`, `.superRefine(…)`): the schema is what it is called on.
      if (ts.isPropertyAccessExpression(callee)) visit(callee.expression, path, seen);
    }
  };
  visit(declarations.get('configSchema')!, '', new Set());
  return out;
}

interface Row {
  path: string;
  type: string;
  default?: unknown;
  env?: string;
  description?: string;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return s.anyOf.map(typeOf).join(' \\| ');
  const t = Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any');
  if (t === 'array' && s.items) return `list of ${typeOf(s.items)}`;
  if (t === 'object' && typeof s.additionalProperties === 'object' && !s.properties) {
    return `map of ${typeOf(s.additionalProperties)}`;
  }
  const range =
    s.minimum !== undefined || s.maximum !== undefined
      ? ` (${s.minimum ?? ''}–${s.maximum ?? ''})`
      : '';
  return `${t}${range}`;
}

function rows(schema: JsonSchema, path: string, out: Row[]): void {
  const leafLike =
    !schema.properties &&
    !(typeof schema.additionalProperties === 'object' && schema.additionalProperties.properties) &&
    !(schema.items && schema.items.properties);
  if (path && leafLike) {
    out.push({ path, type: typeOf(schema), default: schema.default });
    return;
  }
  if (schema.properties) {
    for (const [k, v] of Object.entries(schema.properties)) {
      rows(v, path ? `${path}.${k}` : k, out);
    }
  }
  if (typeof schema.additionalProperties === 'object' && schema.additionalProperties.properties) {
    rows(schema.additionalProperties, `${path}.<name>`, out);
  }
  if (schema.items?.properties) rows(schema.items, `${path}[]`, out);
}

function cell(v: unknown): string {
  if (v === undefined) return '';
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  return `\`${text.replace(/\|/g, '\\|')}\``;
}

/** The whole reference page as Markdown. */
export function renderConfigReference(): string {
  const json = z.toJSONSchema(configSchema, {
    io: 'input',
    unrepresentable: 'any',
  }) as JsonSchema;
  const table: Row[] = [];
  rows(json, '', table);
  const docs = descriptions();
  const envByPath = new Map(
    Object.entries(CONFIG_ENV_OVERRIDES).map(([name, spec]) => [spec.path.join('.'), name]),
  );
  for (const r of table) {
    r.description = docs.get(r.path);
    r.env = envByPath.get(r.path);
  }
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:reference`; do not edit. -->',
    '',
    'Every setting of `labvirt.yaml` (`--config FILE` or `$LABVIRT_CONFIG`): its type, its',
    'default, the environment variable that overrides it, and what it is for. How the',
    'configuration is read and checked: [Configuration](configuration.md).',
    '`<name>` stands for a map key (a flavor name); `[]` for a list item.',
    '',
    '| key | type | default | env | description |',
    '|---|---|---|---|---|',
    ...table.map(
      (r) =>
        `| \`${r.path}\` | ${r.type} | ${cell(r.default)} | ${r.env ? `\`${r.env}\`` : ''} | ${(r.description ?? '').replace(/\|/g, '\\|')} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  writeFileSync(REFERENCE_FILE, renderConfigReference());
  console.log(`wrote ${REFERENCE_FILE}`);
}
