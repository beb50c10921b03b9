import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { renderApiReference, type OpenApiDocument } from '../../scripts/api-reference.js';
import { startTestApi, type TestApi } from './fixtures/harness.js';

let api: TestApi;
beforeEach(async () => {
  api = await startTestApi();
});
afterEach(async () => {
  await api.close();
});

describe('GET /openapi.json', () => {
  it("describes every route from the routes' own schemas", async () => {
    const res = await api.call('GET', '/openapi.json', { auth: false });
    expect(res.status).toBe(200);
    const doc = res.body as OpenApiDocument;
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/healthz', '/readyz', '/v1/sessions', '/v1/sessions/{id}']),
    );
    // The token is required exactly under /v1.
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const op of Object.values(methods) as { security?: unknown[] }[]) {
        expect(Boolean(op.security?.length), path).toBe(path.startsWith('/v1/'));
      }
    }
    // Request validation and the description come from one declaration.
    const create = doc.paths['/v1/sessions']!.post as unknown as {
      requestBody: { content: { 'application/json': { schema: { required: string[] } } } };
    };
    expect(create.requestBody.content['application/json'].schema.required).toContain('labId');
    const refused = await api.call('POST', '/v1/sessions', { body: { student: 'a' } });
    expect(refused.status).toBe(400);
  });

  it('docs/http-api-reference.md is up to date (`-u` rewrites it)', async () => {
    const doc = (await api.call('GET', '/openapi.json', { auth: false })).body as OpenApiDocument;
    await expect(renderApiReference(doc)).toMatchFileSnapshot('../../docs/http-api-reference.md');
  });
});
