import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from './fixtures/harness.js';

/** `GET /v1/sessions/:id?after=…&waitSeconds=…`: the long poll `labvirt start` waits on. */
describe('waiting on a session', () => {
  let api: TestApi;
  beforeEach(async () => {
    api = await startTestApi();
  });
  afterEach(async () => api.close());

  const start = async (student: string) => {
    const r = await api.call('POST', '/v1/sessions', {
      body: { student, labId: 'broken-kubelet' },
    });
    expect(r.status).toBe(201);
    return r.body as { id: string; state: string };
  };

  it('answers at once when the session has moved on from what the client saw', async () => {
    const s = await start('ann');
    const r = await api.call('GET', `/v1/sessions/${s.id}?after=waiting:3&waitSeconds=30`);
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('active');
  });

  it('holds the answer until an event of the session, then answers with the change', async () => {
    // The in-memory service turns the session active at its second read.
    api.service.preparingReads = 2;
    const s = await start('ben');
    expect(s.state).toBe('preparing');
    // Shorter than the 5 s watchdog re-read: only the event can bring the change in time.
    const waiting = api.call('GET', `/v1/sessions/${s.id}?after=preparing&waitSeconds=3`);
    await new Promise((r) => setTimeout(r, 300));
    api.events.emit({
      type: 'env.state',
      envId: 'e1',
      flavor: 'v1.30-3node',
      from: 'preparing',
      to: 'active',
      sessionId: s.id,
    });
    const r = await waiting;
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('active');
  });

  it('answers with the session as it is when the wait is over and nothing changed', async () => {
    api.service.preparingReads = 1000;
    const s = await start('cay');
    // Another session's event does not count as a change of this one.
    const waiting = api.call('GET', `/v1/sessions/${s.id}?after=preparing&waitSeconds=0.5`);
    api.events.emit({
      type: 'session.extended',
      sessionId: 's-zzzzzzzzzz',
      student: 'other',
      expiresAt: new Date().toISOString(),
    });
    const r = await waiting;
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('preparing');
  });

  it('refuses a malformed progress or wait, and another student waiting on the session', async () => {
    const s = await start('dot');
    for (const query of [
      'after=active;rm',
      'after=preparing&waitSeconds=61',
      'after=x&waitSeconds=-1',
    ]) {
      const r = await api.call('GET', `/v1/sessions/${s.id}?${query}`);
      expect(r.status, query).toBe(400);
      expect(r.body.error.code).toBe('INVALID_REQUEST');
    }
    const r = await api.call('GET', `/v1/sessions/${s.id}?after=preparing&waitSeconds=30`, {
      headers: { 'x-labvirt-student': 'eve' },
    });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('NOT_YOUR_SESSION');
  });
});
