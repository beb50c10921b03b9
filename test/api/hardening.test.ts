import { afterEach, describe, expect, it } from 'vitest';
import type { ApiLimits } from '../../src/api/index.js';
import { useRedis } from '../helpers/redis.js';
import { startTestApi, type TestApi } from './fixtures/harness.js';

/** The HTTP API against floods, leaks and outages. */
const redis = useRedis();
let api: TestApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

const limits = (extra: Partial<ApiLimits> = {}): ApiLimits => ({
  perTokenPerMinute: 100_000,
  perStudentPerMinute: 60,
  maxConcurrentChecks: 16,
  redis: redis.connect(),
  keyPrefix: 'test:api-rate',
  ...extra,
});

async function activeSession(a: TestApi, student: string): Promise<string> {
  const started = await a.call('POST', '/v1/sessions', {
    body: { student, labId: 'broken-kubelet' },
  });
  expect(started.status).toBe(201);
  return started.body.id as string;
}

describe('API hardening', () => {
  it('answers 500 concurrent checks of one student with 429 + Retry-After beyond the limit, and stays healthy', async () => {
    api = await startTestApi({ limits: limits() });
    const id = await activeSession(api, 'flooder');
    // Checks are slow (SSH into the VMs): the flood overlaps.
    const check = api.service.check.bind(api.service);
    api.service.check = async (...args) => {
      await new Promise((r) => setTimeout(r, 50));
      return check(...args);
    };
    const results = await Promise.all(
      Array.from({ length: 500 }, () =>
        api!.call('POST', `/v1/sessions/${id}/check`, {
          headers: { 'x-labvirt-student': 'flooder' },
        }),
      ),
    );
    const byStatus = new Map<number, number>();
    for (const r of results) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
    expect([...byStatus.keys()].sort()).toEqual([200, 429]);
    expect(byStatus.get(200)).toBeLessThanOrEqual(59); // the start counted too
    const refused = results.find((r) => r.status === 429)!;
    expect(refused.body.error.code).toBe('RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    // The server is fine, and other students are served.
    expect((await api.call('GET', '/healthz', { auth: false })).status).toBe(200);
    const other = await activeSession(api, 'patient');
    expect(
      (
        await api.call('POST', `/v1/sessions/${other}/check`, {
          headers: { 'x-labvirt-student': 'patient' },
        })
      ).status,
    ).toBe(200);
  }, 60_000);

  it('caps checks running at once (429), and limits per token across API replicas sharing Redis', async () => {
    api = await startTestApi({
      limits: limits({ maxConcurrentChecks: 2, perStudentPerMinute: 1000 }),
    });
    const ids = await Promise.all(['a1', 'a2', 'a3', 'a4'].map((s) => activeSession(api!, s)));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const check = api.service.check.bind(api.service);
    api.service.check = async (...args) => {
      await gate;
      return check(...args);
    };
    const running = ids.slice(0, 2).map((id) => api!.call('POST', `/v1/sessions/${id}/check`));
    await new Promise((r) => setTimeout(r, 200));
    const third = await api.call('POST', `/v1/sessions/${ids[2]}/check`);
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    release();
    expect((await Promise.all(running)).map((r) => r.status)).toEqual([200, 200]);
    expect((await api.call('POST', `/v1/sessions/${ids[3]}/check`)).status).toBe(200);
    await api.close();

    // Two replicas, one Redis: the token's budget is shared.
    const shared = { perTokenPerMinute: 10, keyPrefix: 'test:api-rate-shared' };
    const first = await startTestApi({ limits: limits(shared) });
    const second = await startTestApi({ limits: limits(shared) });
    api = first;
    try {
      const statuses = [];
      for (let i = 0; i < 12; i++)
        statuses.push((await (i % 2 ? second : first).call('GET', '/v1/labs')).status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(10);
      expect(statuses.slice(10)).toEqual([429, 429]);
    } finally {
      await second.close();
    }
  }, 60_000);

  it('logs requests without their query string', async () => {
    api = await startTestApi();
    await api.call('GET', '/v1/sessions?student=ada&token=leaked-secret-in-url');
    await api.call('GET', '/readyz?apikey=other-secret', { auth: false });
    const logs = api.logs();
    expect(logs).toContain('"path":"/v1/sessions"');
    expect(logs).toContain('"msg":"request completed"');
    expect(logs).not.toContain('leaked-secret-in-url');
    expect(logs).not.toContain('other-secret');
  });

  it('/readyz shows no internal error text and asks the service at most once a second', async () => {
    api = await startTestApi();
    let asked = 0;
    api.service.health = async () => {
      asked++;
      return {
        ok: false,
        checks: {
          redis: {
            ok: false,
            detail: 'NOAUTH Authentication required. redis://admin@10.1.2.3:6379',
          },
          cluster: { ok: true },
        },
      };
    };
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => api!.call('GET', '/readyz', { auth: false })),
    );
    expect(answers.every((a) => a.status === 503)).toBe(true);
    expect(answers[0]!.body).toEqual({
      ok: false,
      checks: { redis: { ok: false, detail: 'failed' }, cluster: { ok: true } },
    });
    expect(JSON.stringify(answers)).not.toMatch(/NOAUTH|10\.1\.2\.3|admin/);
    expect(asked).toBe(1);
    expect(api.logs()).toContain('NOAUTH'); // operators still find the cause
    await new Promise((r) => setTimeout(r, 1100));
    await api.call('GET', '/readyz', { auth: false });
    expect(asked).toBe(2);
  });

  it('answers an over-long URL with 414 in the normal error format, without echoing it', async () => {
    api = await startTestApi();
    const long = 'x'.repeat(5000);
    const res = await api.call('GET', `/v1/sessions/${long}`);
    expect(res.status).toBe(414);
    expect(res.body).toEqual({
      error: {
        code: 'INVALID_REQUEST',
        message: 'the URL is too long: a path parameter may have at most 100 characters',
        details: { location: 'url' },
      },
    });
  });

  it('answers /v1/pool with 503 within seconds when its data does not come', async () => {
    api = await startTestApi();
    api.service.poolStatus = () => new Promise(() => undefined);
    const t = Date.now();
    const res = await api.call('GET', '/v1/pool');
    expect(Date.now() - t).toBeLessThan(4500);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('UNAVAILABLE');
    expect(res.headers.get('retry-after')).toBe('5');
  });
});
