import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestApi, TEST_TOKEN, type TestApi } from './fixtures/harness.js';

let api: TestApi;
beforeEach(async () => {
  api = await startTestApi();
});
afterEach(async () => {
  await api.close();
});

describe('bearer token', () => {
  const v1Routes: [string, string][] = [
    ['POST', '/v1/sessions'],
    ['GET', '/v1/sessions'],
    ['GET', '/v1/sessions/s-0000000000'],
    ['DELETE', '/v1/sessions/s-0000000000'],
    ['POST', '/v1/sessions/s-0000000000/extend'],
    ['POST', '/v1/sessions/s-0000000000/check'],
    ['POST', '/v1/sessions/s-0000000000/hint'],
    ['GET', '/v1/pool'],
    ['GET', '/v1/envs'],
    ['GET', '/v1/labs'],
  ];

  it.each(v1Routes)('%s %s without a token is 401 UNAUTHORIZED', async (method, path) => {
    const res = await api.call(method, path, { auth: false });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('UNAUTHORIZED');
    expect(res.body.error.message).toContain('Bearer');
  });

  it.each([
    `Bearer ${TEST_TOKEN}x`,
    `Bearer ${TEST_TOKEN.slice(0, -1)}`,
    'Bearer ',
    `Basic ${Buffer.from(`u:${TEST_TOKEN}`).toString('base64')}`,
    TEST_TOKEN,
  ])('a wrong or malformed Authorization header is 401 (%#)', async (header) => {
    const res = await api.call('GET', '/v1/pool', { headers: { authorization: header } });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('UNAUTHORIZED');
  });

  it('the scheme is case-insensitive and the right token passes', async () => {
    const res = await api.call('GET', '/v1/pool', {
      headers: { authorization: `bearer ${TEST_TOKEN}` },
    });
    expect(res.status).toBe(200);
  });

  it('a rejected request does not reach the service', async () => {
    await api.call('POST', '/v1/sessions', {
      auth: false,
      body: { student: 'x', labId: 'broken-kubelet' },
    });
    expect(api.service.sessions.size).toBe(0);
  });

  it('probes need no token', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      expect((await api.call('GET', path, { auth: false })).status).toBe(200);
    }
  });
});

describe('logging', () => {
  it('logs requests but never the token (right or wrong) nor a private key', async () => {
    const wrong = 'wrong-token-that-must-not-be-logged-42';
    await api.call('GET', '/v1/pool');
    await api.call('GET', '/v1/pool', { headers: { authorization: `Bearer ${wrong}` } });
    const started = await api.call('POST', '/v1/sessions', {
      body: { student: 'alice', labId: 'broken-kubelet' },
    });
    expect(started.body.privateKey).toBeTruthy();
    api.service.listLabs = async () => {
      throw new Error('kaboom');
    };
    await api.call('GET', '/v1/labs');
    await api.call('GET', '/v1/sessions/%20bad');

    const logs = api.logs();
    expect(logs).toContain('"path":"/v1/pool"');
    expect(logs).toContain('request failed');
    expect(logs).toContain('kaboom');
    expect(logs).not.toContain(TEST_TOKEN);
    expect(logs).not.toContain(wrong);
    expect(logs).not.toContain('OPENSSH PRIVATE KEY');
    expect(logs).not.toContain(started.body.privateKey.split('\n')[1]);
  });

  it('every response carries a request id that matches the log line', async () => {
    const res = await api.call('GET', '/v1/labs');
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(api.logs()).toContain(`"reqId":"${id}"`);
  });
});
