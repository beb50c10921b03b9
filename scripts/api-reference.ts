/**
 * docs/http-api-reference.md, rendered from labvirt's own `/openapi.json`
 * (built by @fastify/swagger from the routes' schemas).
 * test/api/openapi.test.ts fails when the page is out of date;
 * `npx vitest run test/api/openapi.test.ts -u` rewrites it.
 */
type Schema = Record<string, unknown>;
interface Operation {
  summary?: string;
  description?: string;
  security?: unknown[];
  parameters?: {
    name: string;
    in: string;
    required?: boolean;
    schema?: Schema;
    description?: string;
  }[];
  requestBody?: { content?: Record<string, { schema?: Schema }>; required?: boolean };
  responses?: Record<
    string,
    { description?: string; content?: Record<string, { schema?: Schema }> }
  >;
}
export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function typeText(s: Schema | undefined): string {
  if (!s) return '';
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (Array.isArray(s.anyOf)) return (s.anyOf as Schema[]).map(typeText).join(' \\| ');
  const t = Array.isArray(s.type) ? (s.type as string[]).join(' \\| ') : String(s.type ?? 'any');
  return s.pattern ? `${t} (\`${String(s.pattern).replace(/\|/g, '\\|')}\`)` : t;
}

function schemaBlock(schema: Schema | undefined): string[] {
  if (!schema) return [];
  return ['```json', JSON.stringify(schema, null, 2), '```'];
}

export function renderApiReference(doc: OpenApiDocument): string {
  const out: string[] = [
    '# HTTP API reference',
    '',
    "<!-- Rendered from GET /openapi.json (the routes' own schemas) by test/api/openapi.test.ts; do not edit. -->",
    '',
    `${doc.info.title}, OpenAPI ${doc.openapi}. labvirt serves this description itself at`,
    '`GET /openapi.json`. How to call the API, authentication and errors:',
    '[HTTP API, metrics and the CLI client](api.md).',
    '',
  ];
  const ops = Object.entries(doc.paths)
    .flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([m]) => METHODS.includes(m))
        .map(([m, op]) => ({ path, method: m.toUpperCase(), op })),
    )
    .sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
  out.push('| route | token |', '|---|---|');
  for (const { path, method, op } of ops) {
    out.push(`| \`${method} ${path}\` | ${op.security?.length ? 'bearer' : 'none'} |`);
  }
  out.push('');
  for (const { path, method, op } of ops) {
    out.push(`## ${method} ${path}`, '');
    if (op.summary) out.push(op.summary, '');
    if (op.description) out.push(op.description, '');
    out.push(op.security?.length ? 'Needs `Authorization: Bearer <token>`.' : 'No token.', '');
    if (op.parameters?.length) {
      out.push('| parameter | in | required | type |', '|---|---|---|---|');
      for (const p of op.parameters) {
        out.push(
          `| \`${p.name}\` | ${p.in} | ${p.required ? 'yes' : 'no'} | ${typeText(p.schema)} |`,
        );
      }
      out.push('');
    }
    const body = op.requestBody?.content?.['application/json']?.schema;
    if (body) out.push('Request body (`application/json`):', '', ...schemaBlock(body), '');
    for (const [status, response] of Object.entries(op.responses ?? {})) {
      const schema = Object.values(response.content ?? {})[0]?.schema;
      out.push(
        `Response ${status}${response.description && response.description !== 'Default Response' ? `: ${response.description}` : ''}`,
        '',
      );
      out.push(...schemaBlock(schema), '');
    }
  }
  return out.join('\n');
}
