import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from './fixtures/harness.js';

let api: TestApi;
beforeEach(async () => {
  api = await startTestApi();
});
afterEach(async () => {
  await api.close();
});

const scrape = async () => {
  const res = await api.call('GET', '/metrics', { auth: false });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return res.body as string;
};

/** The value of one sample line, e.g. `labvirt_claim_latency_seconds_count`. */
const sample = (text: string, name: string, labels = ''): number | undefined => {
  const line = text
    .split('\n')
    .find(
      (l) => l.startsWith(`${name}${labels} `) || (l.startsWith(`${name}${labels}{`) && !labels),
    );
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
};

describe('/metrics', () => {
  it('exposes labvirt and process metrics', async () => {
    const text = await scrape();
    for (const name of [
      'labvirt_pool_envs',
      'labvirt_pool_target_warm',
      'labvirt_queue_waiting',
      'labvirt_capacity_blocked',
      'labvirt_pool_status_up',
      'labvirt_claim_latency_seconds',
      'labvirt_queue_wait_seconds',
      'labvirt_provision_duration_seconds',
      'labvirt_env_failures_total',
      'labvirt_sessions_total',
      'labvirt_checks_total',
      'labvirt_hints_total',
      'labvirt_kube_requests_total',
      'labvirt_ssh_gateway_connections',
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
    ]) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
  });

  it('reads pool gauges from the service at scrape time', async () => {
    let text = await scrape();
    expect(sample(text, 'labvirt_pool_envs', '{flavor="v1.30-3node",state="warm"}')).toBe(2);
    expect(sample(text, 'labvirt_pool_target_warm', '{flavor="v1.30-3node"}')).toBe(3);
    expect(sample(text, 'labvirt_capacity_blocked', '{flavor="v1.30-3node"}')).toBe(0);
    expect(sample(text, 'labvirt_pool_status_up')).toBe(1);
    await api.call('POST', '/v1/sessions', { body: { student: 'a', labId: 'broken-kubelet' } });
    text = await scrape();
    expect(sample(text, 'labvirt_pool_envs', '{flavor="v1.30-3node",state="warm"}')).toBe(1);
    expect(sample(text, 'labvirt_pool_envs', '{flavor="v1.30-3node",state="active"}')).toBe(1);
  });

  it('a failing pool status is a 0 in labvirt_pool_status_up, not a failed scrape', async () => {
    let calls = 0;
    api.service.poolStatus = async () => {
      calls++;
      throw new Error('redis down');
    };
    const text = await scrape();
    expect(sample(text, 'labvirt_pool_status_up')).toBe(0);
    expect(text).not.toContain('labvirt_pool_envs{');
    expect(calls).toBe(1); // one read serves every pool gauge of a scrape
  });

  it('histograms and counters follow the events on the bus', async () => {
    const before = sample(await scrape(), 'labvirt_claim_latency_seconds_count') ?? 0;
    api.events.emit({
      type: 'session.ready',
      sessionId: 's-1',
      student: 'a',
      labId: 'broken-kubelet',
      envId: 'e1',
      claimLatencyMs: 4000,
      queueWaitMs: 30_000,
    });
    api.events.emit({
      type: 'env.state',
      envId: 'e2',
      flavor: 'v1.30-3node',
      from: 'booting',
      to: 'warm',
      provisionMs: 95_000,
    });
    api.events.emit({
      type: 'env.failed',
      envId: 'e3',
      flavor: 'v1.30-3node',
      attempt: 1,
      willRetry: true,
      reason: 'x',
    });
    api.events.emit({
      type: 'check.completed',
      sessionId: 's-1',
      student: 'a',
      labId: 'broken-kubelet',
      passed: true,
      score: 3,
      maxScore: 3,
    });
    api.events.emit({
      type: 'hint.revealed',
      sessionId: 's-1',
      student: 'a',
      labId: 'broken-kubelet',
      index: 1,
      total: 2,
    });
    api.events.emit({
      type: 'session.ended',
      sessionId: 's-1',
      student: 'a',
      labId: 'broken-kubelet',
      reason: 'expired',
    });
    api.metrics.observeKubeRequest('create', 'virtualmachines');
    api.metrics.observeKubeRequest('create', 'virtualmachines');

    const text = await scrape();
    expect(sample(text, 'labvirt_claim_latency_seconds_count')).toBe(before + 1);
    expect(sample(text, 'labvirt_claim_latency_seconds_sum')).toBe(4);
    expect(sample(text, 'labvirt_claim_latency_seconds_bucket', '{le="5"}')).toBe(1);
    expect(sample(text, 'labvirt_claim_latency_seconds_bucket', '{le="2"}')).toBe(0);
    expect(sample(text, 'labvirt_queue_wait_seconds_sum')).toBe(30);
    expect(sample(text, 'labvirt_provision_duration_seconds_count', '{flavor="v1.30-3node"}')).toBe(
      1,
    );
    expect(sample(text, 'labvirt_env_failures_total', '{flavor="v1.30-3node"}')).toBe(1);
    expect(sample(text, 'labvirt_checks_total', '{lab="broken-kubelet",result="passed"}')).toBe(1);
    expect(sample(text, 'labvirt_hints_total', '{lab="broken-kubelet"}')).toBe(1);
    expect(sample(text, 'labvirt_sessions_total', '{lab="broken-kubelet",outcome="expired"}')).toBe(
      1,
    );
    expect(
      sample(text, 'labvirt_kube_requests_total', '{verb="create",resource="virtualmachines"}'),
    ).toBe(2);
  });
});

describe('deploy/grafana/labvirt-dashboard.json', () => {
  it('queries only metrics labvirt exposes, and shows what operators watch', async () => {
    const dashboard = JSON.parse(
      readFileSync(
        join(import.meta.dirname, '..', '..', 'deploy', 'grafana', 'labvirt-dashboard.json'),
        'utf8',
      ),
    ) as { panels: { title: string; targets: { expr: string }[] }[] };
    const text = await scrape();
    const used = new Set(
      dashboard.panels.flatMap((p) =>
        p.targets.flatMap((t) =>
          [...t.expr.matchAll(/\blabvirt_[a-z_]+/g)].map((m) =>
            m[0].replace(/_(bucket|count|sum)$/, ''),
          ),
        ),
      ),
    );
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(text, name).toContain(`# TYPE ${name} `);
    const titles = dashboard.panels.map((p) => p.title);
    for (const wanted of [
      'Pool by state',
      'Claim latency',
      'Waiting line',
      'Provision failures',
      'SSH connections',
    ]) {
      expect(titles).toContain(wanted);
    }
  });
});
