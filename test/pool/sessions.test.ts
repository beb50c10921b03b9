import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envNamespace } from '../../src/kube/index.js';
import { envNodes } from '../../src/pool/nodes.js';
import { LabvirtError, type SessionView } from '../../src/sessions/types.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const ONE = 'v1.30-1node';

describe('200 concurrent starts against a pool of 20', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: { [ONE]: { kubernetesVersion: '1.30', nodes: 1, minWarm: 20, maxTotal: 20 } },
        pool: { maxProvisioning: 20, workerConcurrency: 20 },
      },
    });
    await stack.fillPool(ONE, 20, { timeoutMs: 120_000 });
  }, 180_000);
  afterAll(async () => stack?.stop());

  it('gives no env twice, queues the rest in order, holds the per-student limit, and serves waiters in order', async () => {
    const { service } = stack.labvirt;
    const greedy = Array.from({ length: 10 }, () =>
      service.start({ student: 'greedy', labId: 'fixture-one' }).then(
        (s) => s,
        (e: unknown) => e,
      ),
    );
    const crowd = Array.from({ length: 190 }, (_, i) =>
      service.start({ student: `student${i}`, labId: 'fixture-one' }),
    );
    const results = await Promise.all([...greedy, ...crowd]);
    const sessions = results.filter((r): r is SessionView => !(r instanceof Error));
    const refused = results.filter((r) => r instanceof LabvirtError);
    expect(refused).toHaveLength(9);
    expect(refused.every((e) => (e as LabvirtError).code === 'LIMIT_REACHED')).toBe(true);
    expect(sessions).toHaveLength(191);
    const claimed = sessions.filter((s) => s.state === 'claimed');
    const waiting = sessions.filter((s) => s.state === 'waiting');
    expect(claimed).toHaveLength(20);
    expect(new Set(claimed.map((s) => s.envId)).size).toBe(20);
    expect(waiting).toHaveLength(171);
    expect(waiting.map((s) => s.queue!.position).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 171 }, (_, i) => i + 1),
    );
    for (const s of waiting) expect(s.queue!.estimateSeconds).toBeGreaterThan(0);
    const line = [...waiting].sort((a, b) => a.queue!.position - b.queue!.position);

    // Every claimed student gets in.
    for (const s of claimed) await stack.untilSession(s.id, 'active', 60_000);

    // The first ten release their envs: the pool (capped at 20) replaces them
    // and the head of the line is served first, in order.
    for (const s of claimed.slice(0, 10)) await service.stop(s.id);
    const served: string[] = [];
    await stack.until(
      async () => {
        await stack.labvirt.runMaintenance('replenish');
        for (const w of line.slice(0, 10)) {
          if (served.includes(w.id)) continue;
          const st = await service.status(w.id);
          if (st.state !== 'waiting') served.push(w.id);
        }
        return served.length === 10;
      },
      'the first ten waiters to be served',
      120_000,
    );
    expect([...served].sort()).toEqual(
      line
        .slice(0, 10)
        .map((w) => w.id)
        .sort(),
    );
    // Nobody behind them got an env first.
    for (const w of line.slice(10)) expect((await service.status(w.id)).state).toBe('waiting');
    // Their positions moved up.
    expect((await service.status(line[10]!.id)).queue?.position).toBe(1);
  }, 300_000);
});

describe('session lifecycle details', () => {
  let stack: TestStack;
  let clock = Date.now();
  beforeAll(async () => {
    stack = await startTestStack({ now: () => clock });
    await stack.fillPool(ONE, 2, { timeoutMs: 60_000 });
  }, 120_000);
  afterAll(async () => stack?.stop());

  it('warns before expiry, lets the student extend, then expires and tears the env down', async () => {
    const { service } = stack.labvirt;
    const s = await service.start({ student: 'eve', labId: 'fixture-one' });
    const active = await stack.untilSession(s.id, 'active');
    const expiresAt = Date.parse(active.expiresAt!);
    expect(expiresAt - clock).toBeCloseTo(30 * 60_000, -4);

    clock = expiresAt - 5 * 60_000; // inside the 10-minute warning window
    await stack.labvirt.runMaintenance('expire');
    await stack.labvirt.runMaintenance('expire'); // warned once, not twice
    const warnings = stack.events.filter(
      (e) => e.type === 'session.warning' && e.sessionId === s.id,
    );
    expect(warnings).toHaveLength(1);

    const extended = await service.extend(s.id, 'eve');
    expect(Date.parse(extended.expiresAt!)).toBe(expiresAt + 30 * 60_000);

    clock = Date.parse(extended.expiresAt!) + 1000;
    await stack.labvirt.runMaintenance('expire');
    const ended = await service.status(s.id);
    expect(ended).toMatchObject({ state: 'ended', endedReason: 'expired' });
    // On labvirt's clock, as the expiry was decided: not before the session expired.
    expect(Date.parse(ended.endedAt!)).toBe(clock);
    await stack.until(
      async () => !(await stack.labvirt.store.getEnv(active.envId!)),
      'env torn down',
    );
    expect(await stack.labvirt.context.cluster.getNamespace(`lab-${active.envId}`)).toBeUndefined();
  }, 60_000);

  it('refuses an extension beyond the maximum with a clear code', async () => {
    const { service } = stack.labvirt;
    const s = await service.start({ student: 'fred', labId: 'fixture-one' });
    await stack.untilSession(s.id, 'active');
    let last: unknown;
    for (let i = 0; i < 20; i++) {
      try {
        await service.extend(s.id);
      } catch (err) {
        last = err;
        break;
      }
    }
    expect(last).toMatchObject({ code: 'MAX_EXTENSION' });
    const view = await service.status(s.id);
    expect(view.expiresAt).toBe(view.maxExpiresAt);
    expect(Date.parse((await service.stop(s.id)).endedAt!)).toBe(clock);
  }, 60_000);

  it('moves a student to another env when the lab setup fails, and tears the broken env down', async () => {
    const { labvirt } = stack;
    await stack.fillPool(ONE, 2);
    // Break the env that will be claimed next (the oldest warm one).
    const [oldestId] = await labvirt.store.warmEnvIds(ONE);
    const oldest = await labvirt.store.getEnv(oldestId!);
    const ctx = labvirt.context;
    const [node] = await envNodes(ctx.cluster, envNamespace(ctx.config, oldest!.envId), [
      'control-plane',
    ]);
    const planted = await ctx.executor.exec(
      { envId: oldest!.envId, node: 'control-plane', ip: node!.ip },
      '#!/bin/bash\nmkdir -p /etc/fixture && touch /etc/fixture/broken-env\n',
      { timeoutMs: 10_000 },
    );
    expect(planted.exitCode).toBe(0);

    const s = await labvirt.service.start({ student: 'gina', labId: 'fixture-one' });
    expect(s.envId).toBe(oldest!.envId);
    const active = await stack.untilSession(s.id, 'active');
    expect(active.envId).not.toBe(oldest!.envId);
    expect(stack.events.some((e) => e.type === 'session.moved' && e.sessionId === s.id)).toBe(true);
    await stack.until(
      async () => !(await labvirt.store.getEnv(oldest!.envId)),
      'the broken env torn down',
    );
    await labvirt.service.stop(s.id);
  }, 60_000);

  it('answers bad requests with stable codes and loses nothing', async () => {
    const { service } = stack.labvirt;
    await expect(service.start({ student: 'hank', labId: 'no-such-lab' })).rejects.toMatchObject({
      code: 'UNKNOWN_LAB',
    });
    await expect(
      service.start({ student: 'bad student; rm -rf /', labId: 'fixture-one' }),
    ).rejects.toMatchObject({
      code: 'INVALID_REQUEST',
    });
    await expect(
      service.start({
        student: 'hank',
        labId: 'fixture-one',
        publicKey: '-----BEGIN OPENSSH PRIVATE KEY-----',
      }),
    ).rejects.toMatchObject({ code: 'INVALID_PUBLIC_KEY' });
    await expect(service.status('s-0000000000')).rejects.toMatchObject({
      code: 'SESSION_NOT_FOUND',
    });
    expect(await service.list({ student: 'hank' })).toEqual([]);
  });
});
