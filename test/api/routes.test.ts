import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from './fixtures/harness.js';

let api: TestApi;
beforeEach(async () => {
  api = await startTestApi();
});
afterEach(async () => {
  await api.close();
});

const start = (student = 'U024BE7LH', extra: Record<string, unknown> = {}) =>
  api.call('POST', '/v1/sessions', { body: { student, labId: 'broken-kubelet', ...extra } });

describe('sessions', () => {
  it('starts a session: 201, Location, the view with connection details and private key, no-store', async () => {
    const res = await start();
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toBe(`/v1/sessions/${res.body.id}`);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toMatchObject({
      student: 'U024BE7LH',
      labId: 'broken-kubelet',
      labTitle: 'The kubelet will not start',
      state: 'active',
      hintsUsed: 0,
      hintsTotal: 2,
      connection: { mode: 'gateway', host: '127.0.0.1', port: 2222 },
    });
    expect(res.body.privateKey).toContain('OPENSSH PRIVATE KEY');
  });

  it('is idempotent on requestId (body or Idempotency-Key): 200 with the same session', async () => {
    const first = await start('alice@example.org', { requestId: '1234.5678.abc' });
    expect(first.status).toBe(201);
    const again = await start('alice@example.org', { requestId: '1234.5678.abc' });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    const viaHeader = await api.call('POST', '/v1/sessions', {
      body: { student: 'alice@example.org', labId: 'broken-kubelet' },
      headers: { 'idempotency-key': '1234.5678.abc' },
    });
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.body.id).toBe(first.body.id);
    const disagree = await api.call('POST', '/v1/sessions', {
      body: { student: 'alice@example.org', labId: 'broken-kubelet', requestId: 'a' },
      headers: { 'idempotency-key': 'b' },
    });
    expect(disagree.status).toBe(400);
    expect(disagree.body.error.code).toBe('INVALID_REQUEST');
  });

  it('concurrent repeats of one request make one session', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, () => start('bob', { requestId: 'slack-retry-1' })),
    );
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    expect(results.every((r) => r.status === 200 || r.status === 201)).toBe(true);
    expect((await api.call('GET', '/v1/sessions?student=bob')).body.sessions).toHaveLength(1);
  });

  it('lists, shows, extends, hints, checks and stops', async () => {
    const { body: s } = await start('carol');
    const list = await api.call('GET', '/v1/sessions?student=carol');
    expect(list.status).toBe(200);
    expect(list.body.sessions.map((x: { id: string }) => x.id)).toEqual([s.id]);
    expect(list.body.sessions[0].privateKey).toBeUndefined();

    const shown = await api.call('GET', `/v1/sessions/${s.id}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ id: s.id, state: 'active' });
    expect(shown.body.privateKey).toBeUndefined();

    const extended = await api.call('POST', `/v1/sessions/${s.id}/extend`);
    expect(extended.status).toBe(200);
    expect(extended.body.expiresAt).toBe(s.maxExpiresAt);

    const hint = await api.call('POST', `/v1/sessions/${s.id}/hint`, {
      headers: { 'content-type': 'application/json' }, // with an empty body
    });
    expect(hint.status).toBe(200);
    expect(hint.body).toEqual({
      sessionId: s.id,
      index: 1,
      total: 2,
      text: 'Look at journalctl -u kubelet.',
    });

    const check = await api.call('POST', `/v1/sessions/${s.id}/check`);
    expect(check.status).toBe(200);
    expect(check.body).toMatchObject({ sessionId: s.id, passed: false, score: 1, maxScore: 3 });
    expect(check.body.checks[1]).toEqual({
      name: 'kubelet-running',
      description: 'the kubelet runs on worker-1',
      passed: false,
      points: 0,
      messages: ['kubelet on worker-1 is not active'],
    });

    const stopped = await api.call('DELETE', `/v1/sessions/${s.id}`);
    expect(stopped.status).toBe(200);
    expect(stopped.body).toMatchObject({ id: s.id, state: 'ended', endedReason: 'released' });
    expect((await api.call('GET', '/v1/sessions?student=carol')).body.sessions).toEqual([]);
    const all = await api.call('GET', '/v1/sessions?student=carol&includeEnded=true');
    expect(all.body.sessions).toHaveLength(1);
  });
});

describe('pool, envs, labs', () => {
  it('GET /v1/pool returns counts per flavor and state', async () => {
    const res = await api.call('GET', '/v1/pool');
    expect(res.status).toBe(200);
    const [flavor] = res.body.flavors;
    expect(flavor).toMatchObject({ flavor: 'v1.30-3node', targetWarm: 3, capacityBlocked: false });
    expect(Object.keys(flavor.counts)).toContain('warm');
    expect(flavor.scheduledTargets[0].name).toBe('tuesday-class');
  });

  it('GET /v1/envs filters by flavor and state; bad state is a 400 naming the field', async () => {
    await start('dave');
    const warm = await api.call('GET', '/v1/envs?state=warm');
    expect(warm.status).toBe(200);
    expect(warm.body.envs.length).toBeGreaterThan(0);
    expect(warm.body.envs.every((e: { state: string }) => e.state === 'warm')).toBe(true);
    const active = await api.call('GET', '/v1/envs?flavor=v1.30-3node&state=active');
    expect(active.body.envs).toHaveLength(1);
    expect(active.body.envs[0]).toMatchObject({ student: 'dave', labId: 'broken-kubelet' });
    const bad = await api.call('GET', '/v1/envs?state=sleeping');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({
      code: 'INVALID_REQUEST',
      details: { field: 'state', location: 'querystring' },
    });
  });

  it('GET /v1/labs lists labs without their hints', async () => {
    const res = await api.call('GET', '/v1/labs');
    expect(res.status).toBe(200);
    expect(res.body.labs[0]).toEqual({
      id: 'broken-kubelet',
      title: 'The kubelet will not start',
      flavor: 'v1.30-3node',
      difficulty: 'easy',
      timeLimitMinutes: 60,
    });
  });
});

describe('errors', () => {
  it.each([
    [
      'UNKNOWN_LAB',
      404,
      () => api.call('POST', '/v1/sessions', { body: { student: 'e', labId: 'nope' } }),
    ],
    [
      'UNKNOWN_FLAVOR',
      422,
      () => api.call('POST', '/v1/sessions', { body: { student: 'e', labId: 'exotic-lab' } }),
    ],
    ['INVALID_PUBLIC_KEY', 400, () => start('e', { publicKey: 'ssh-rsa not-a-key' })],
    ['SESSION_NOT_FOUND', 404, () => api.call('GET', '/v1/sessions/s-0000000000')],
  ])('%s → %i', async (code, status, call) => {
    const res = await call();
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    expect(typeof res.body.error.message).toBe('string');
  });

  it('LIMIT_REACHED 409 with the running sessions in details', async () => {
    const first = await start('frank');
    const second = await start('frank');
    expect(second.status).toBe(409);
    expect(second.body.error).toMatchObject({
      code: 'LIMIT_REACHED',
      details: { sessions: [first.body.id] },
    });
  });

  it('MAX_EXTENSION, NO_MORE_HINTS and SESSION_NOT_ACTIVE are 409', async () => {
    const { body: s } = await start('gina');
    await api.call('POST', `/v1/sessions/${s.id}/extend`);
    const ext = await api.call('POST', `/v1/sessions/${s.id}/extend`);
    expect([ext.status, ext.body.error.code]).toEqual([409, 'MAX_EXTENSION']);
    await api.call('POST', `/v1/sessions/${s.id}/hint`);
    await api.call('POST', `/v1/sessions/${s.id}/hint`);
    const hint = await api.call('POST', `/v1/sessions/${s.id}/hint`);
    expect([hint.status, hint.body.error.code]).toEqual([409, 'NO_MORE_HINTS']);
    await api.call('DELETE', `/v1/sessions/${s.id}`);
    const check = await api.call('POST', `/v1/sessions/${s.id}/check`);
    expect([check.status, check.body.error.code]).toEqual([409, 'SESSION_NOT_ACTIVE']);
  });

  it('UNAVAILABLE → 503 and a plain crash → 500 INTERNAL without internals', async () => {
    const { LabvirtError } = await import('../../src/sessions/types.js');
    api.service.poolStatus = async () => {
      throw new LabvirtError('UNAVAILABLE', 'redis is down');
    };
    const down = await api.call('GET', '/v1/pool');
    expect([down.status, down.body.error.code]).toEqual([503, 'UNAVAILABLE']);
    api.service.listLabs = async () => {
      throw new Error('ECONNRESET at /srv/labvirt/secret-path.ts:42');
    };
    const crash = await api.call('GET', '/v1/labs');
    expect(crash.status).toBe(500);
    expect(crash.body.error.code).toBe('INTERNAL');
    expect(JSON.stringify(crash.body)).not.toContain('secret-path');
    expect(api.logs()).toContain('secret-path'); // the cause is in the server log
  });

  it('unknown routes are 404 NOT_FOUND in the same shape', async () => {
    const res = await api.call('GET', '/v1/nothing-here');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('NOT_FOUND');
    const unauth = await api.call('GET', '/nope', { auth: false });
    expect(unauth.body.error.code).toBe('NOT_FOUND');
  });

  it.each([
    [
      { student: 'bad student; rm -rf /', labId: 'broken-kubelet' },
      'student',
      'must match pattern',
    ],
    [
      { student: 'x'.repeat(129), labId: 'broken-kubelet' },
      'student',
      'must NOT have more than 128',
    ],
    [{ student: 'ok', labId: 'Not_A_DNS_Label' }, 'labId', 'must match pattern'],
    [{ student: 'ok' }, 'labId', 'is required'],
    [{ student: 'ok', labId: 'broken-kubelet', labid: 'typo' }, 'labid', 'is not a known field'],
    [
      { student: 'ok', labId: 'broken-kubelet', publicKey: 'k'.repeat(9000) },
      'publicKey',
      'more than 8192',
    ],
    [
      { student: 'ok', labId: 'broken-kubelet', requestId: 'has:colon' },
      'requestId',
      'must match pattern',
    ],
    [{ student: 42, labId: 'broken-kubelet' }, 'student', 'must be string'],
  ])('bad body #%# → 400 naming the field', async (body, field, fragment) => {
    const res = await api.call('POST', '/v1/sessions', { body });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('INVALID_REQUEST');
    expect(res.body.error.details.field).toBe(field);
    expect(res.body.error.message).toContain(`"${field}"`);
    expect(res.body.error.message).toContain(fragment);
  });

  it('bad session ids, malformed JSON and oversized bodies are 4xx INVALID_REQUEST', async () => {
    const badId = await api.call('GET', '/v1/sessions/..%2F..%2Fetc');
    expect(badId.status).toBe(400);
    expect(badId.body.error.details).toMatchObject({ field: 'id', location: 'params' });
    const json = await api.call('POST', '/v1/sessions', { body: '{"student": ' });
    expect([json.status, json.body.error.code]).toEqual([400, 'INVALID_REQUEST']);
    const big = await api.call('POST', '/v1/sessions', {
      body: { student: 'ok', labId: 'x'.repeat(70_000) },
    });
    expect([big.status, big.body.error.code]).toEqual([413, 'INVALID_REQUEST']);
    const form = await api.call('POST', '/v1/sessions', {
      body: 'student=ok&labId=broken-kubelet',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect([form.status, form.body.error.code]).toEqual([415, 'INVALID_REQUEST']);
  });
});

describe('X-Labvirt-Student', () => {
  it("a front end acting for a student cannot touch another student's session", async () => {
    const { body: mine } = await start('U_ALICE');
    const { body: theirs } = await start('U_BOB');
    const asAlice = { 'x-labvirt-student': 'U_ALICE' };
    expect((await api.call('GET', `/v1/sessions/${mine.id}`, { headers: asAlice })).status).toBe(
      200,
    );
    for (const [method, path] of [
      ['GET', `/v1/sessions/${theirs.id}`],
      ['DELETE', `/v1/sessions/${theirs.id}`],
      ['POST', `/v1/sessions/${theirs.id}/extend`],
      ['POST', `/v1/sessions/${theirs.id}/check`],
      ['POST', `/v1/sessions/${theirs.id}/hint`],
    ] as const) {
      const res = await api.call(method, path, { headers: asAlice });
      expect([method, path, res.status, res.body.error.code]).toEqual([
        method,
        path,
        403,
        'NOT_YOUR_SESSION',
      ]);
    }
    expect((await api.call('GET', `/v1/sessions/${theirs.id}`)).body.state).toBe('active');

    const list = await api.call('GET', '/v1/sessions', { headers: asAlice });
    expect(list.body.sessions.map((s: { id: string }) => s.id)).toEqual([mine.id]);
    const other = await api.call('GET', '/v1/sessions?student=U_BOB', { headers: asAlice });
    expect([other.status, other.body.error.code]).toEqual([403, 'FORBIDDEN']);
    const envs = await api.call('GET', '/v1/envs', { headers: asAlice });
    expect(envs.body.envs.map((e: { student?: string }) => e.student)).toEqual(['U_ALICE']);

    const forBob = await api.call('POST', '/v1/sessions', {
      body: { student: 'U_BOB', labId: 'broken-kubelet' },
      headers: asAlice,
    });
    expect([forBob.status, forBob.body.error.code]).toEqual([403, 'FORBIDDEN']);
  });

  it('the header may stand in for body.student, and must itself be valid', async () => {
    await api.call('DELETE', '/v1/sessions/whatever');
    const res = await api.call('POST', '/v1/sessions', {
      body: { labId: 'broken-kubelet' },
      headers: { 'x-labvirt-student': 'U_CAROL' },
    });
    expect(res.status).toBe(201);
    expect(res.body.student).toBe('U_CAROL');
    const noStudent = await api.call('POST', '/v1/sessions', { body: { labId: 'broken-kubelet' } });
    expect(noStudent.status).toBe(400);
    expect(noStudent.body.error.details.field).toBe('student');
    const bad = await api.call('GET', '/v1/sessions', {
      headers: { 'x-labvirt-student': '$(reboot)' },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.field).toBe('x-labvirt-student');
  });
});

describe('probes', () => {
  it('/healthz and /readyz need no token; /readyz is 503 with the failing check', async () => {
    expect((await api.call('GET', '/healthz', { auth: false })).body).toEqual({ ok: true });
    const ready = await api.call('GET', '/readyz', { auth: false });
    expect(ready.status).toBe(200);
    expect(ready.body.ok).toBe(true);
    api.service.healthy = false;
    // Answers are reused for a second.
    await new Promise((r) => setTimeout(r, 1100));
    const down = await api.call('GET', '/readyz', { auth: false });
    expect(down.status).toBe(503);
    // Which check failed, not the internal error text (that goes to the log).
    expect(down.body.checks.cluster).toEqual({ ok: false, detail: 'failed' });
    api.service.health = async () => {
      throw new Error('boom');
    };
    await new Promise((r) => setTimeout(r, 1100));
    const threw = await api.call('GET', '/readyz', { auth: false });
    expect(threw.status).toBe(503);
    expect(threw.body.ok).toBe(false);
  });
});

describe('startApi', () => {
  it('reports its URL and stops answering after close()', async () => {
    expect(api.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const url = api.url;
    await api.close();
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    api = await startTestApi(); // for afterEach
  });
});
