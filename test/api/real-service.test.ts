import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../helpers/stack.js';

/** The HTTP API in front of the real orchestrator (Redis, the simulator, SSH guests). */
describe('HTTP API over the real service', () => {
  let stack: TestStack;
  let call: (
    method: string,
    path: string,
    body?: unknown,
    student?: string,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
  ) => Promise<{ status: number; body: any }>;
  beforeAll(async () => {
    stack = await startTestStack();
    await stack.fillPool('v1.30-1node', 2);
    call = async (method, path, body, student) => {
      const res = await fetch(`${stack.labvirt.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${stack.apiToken}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
          ...(student ? { 'x-labvirt-student': student } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: res.status === 204 ? undefined : await res.json() };
    };
  }, 90_000);
  afterAll(async () => stack?.stop());

  it('runs a whole session: start, wait, check, hint, extend, stop', async () => {
    const started = await call('POST', '/v1/sessions', {
      student: 'olga',
      labId: 'fixture-one',
      requestId: 'r-olga',
    });
    expect(started.status).toBe(201);
    expect(started.body.privateKey).toMatch(/PRIVATE KEY/);
    const again = await call('POST', '/v1/sessions', {
      student: 'olga',
      labId: 'fixture-one',
      requestId: 'r-olga',
    });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(started.body.id);
    const id = started.body.id as string;
    await stack.untilSession(id, 'active');
    const status = await call('GET', `/v1/sessions/${id}`);
    expect(status.body).toMatchObject({
      state: 'active',
      connection: { mode: 'gateway', user: id },
    });
    const check = await call('POST', `/v1/sessions/${id}/check`);
    expect(check.status).toBe(200);
    expect(check.body).toMatchObject({ passed: false, score: 0, maxScore: 1 });
    // One check per session at a time: a second sent meanwhile is 409, not a second run.
    const both = await Promise.all([
      call('POST', `/v1/sessions/${id}/check`),
      call('POST', `/v1/sessions/${id}/check`),
    ]);
    expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
    expect(both.find((r) => r.status === 409)!.body.error.code).toBe('CHECK_RUNNING');
    expect((await call('POST', `/v1/sessions/${id}/check`)).status).toBe(200);
    const hint = await call('POST', `/v1/sessions/${id}/hint`, undefined, 'olga');
    expect(hint.body).toMatchObject({ index: 1, total: 2 });
    const foreign = await call('POST', `/v1/sessions/${id}/hint`, undefined, 'mallory');
    expect(foreign.status).toBe(403);
    const extended = await call('POST', `/v1/sessions/${id}/extend`);
    expect(Date.parse(extended.body.expiresAt)).toBeGreaterThan(Date.parse(status.body.expiresAt));
    const pool = await call('GET', '/v1/pool');
    expect(
      pool.body.flavors.find((f: { flavor: string }) => f.flavor === 'v1.30-1node').counts.active,
    ).toBe(1);
    const stopped = await call('DELETE', `/v1/sessions/${id}`);
    expect(stopped.body.state).toBe('ended');
    const metrics = await (await fetch(`${stack.labvirt.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/labvirt_claim_latency_seconds_count 1/);
    expect(metrics).toMatch(
      /labvirt_kube_requests_total\{verb="create",resource="VirtualMachine"\}/,
    );
  }, 60_000);

  it("refuses another student's request id with 409 and keeps the owner's session", async () => {
    const first = await call('POST', '/v1/sessions', {
      student: 'rita',
      labId: 'fixture-one',
      requestId: 'r-shared-id',
    });
    expect(first.status).toBe(201);
    const stolen = await call('POST', '/v1/sessions', {
      student: 'mallory',
      labId: 'fixture-one',
      requestId: 'r-shared-id',
    });
    expect(stolen.status).toBe(409);
    expect(stolen.body.error.code).toBe('REQUEST_ID_IN_USE');
    expect(JSON.stringify(stolen.body)).not.toContain(first.body.id);
    const mine = await call('GET', '/v1/sessions?student=mallory');
    expect(JSON.stringify(mine.body)).not.toContain(first.body.id);
    const repeated = await call('POST', '/v1/sessions', {
      student: 'rita',
      labId: 'fixture-one',
      requestId: 'r-shared-id',
    });
    expect(repeated.status).toBe(200);
    expect(repeated.body.id).toBe(first.body.id);
    expect(repeated.body.privateKey).toBeUndefined();
    expect((await call('DELETE', `/v1/sessions/${first.body.id}`)).body.state).toBe('ended');
  }, 60_000);

  it("counts open SSH connections through this replica's gateway", async () => {
    const gauge = async () => {
      const text = await (await fetch(`${stack.labvirt.apiUrl}/metrics`)).text();
      return Number(/^labvirt_ssh_gateway_connections (\d+)$/m.exec(text)?.[1]);
    };
    expect(await gauge()).toBe(0);
    const started = await call('POST', '/v1/sessions', { student: 'sam', labId: 'fixture-one' });
    const id = started.body.id as string;
    await stack.untilSession(id, 'active');
    const client = new ssh2.Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({
        host: '127.0.0.1',
        port: stack.labvirt.gatewayPort,
        username: id,
        privateKey: started.body.privateKey as string,
      });
    });
    try {
      expect(await gauge()).toBe(1);
    } finally {
      client.end();
    }
    await stack.until(async () => (await gauge()) === 0, 'the connection to close');
    await call('DELETE', `/v1/sessions/${id}`);
  }, 60_000);

  it('answers unknown labs and bad students with stable error codes', async () => {
    const unknown = await call('POST', '/v1/sessions', { student: 'pat', labId: 'nope' });
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'UNKNOWN_LAB' } } });
    const ready = await fetch(`${stack.labvirt.apiUrl}/readyz`);
    expect(ready.status).toBe(200);
  });
});
