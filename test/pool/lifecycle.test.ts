import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabvirtError } from '../../src/sessions/types.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const ONE = 'v1.30-1node';

describe('pool and sessions end to end (real Redis, simulated KubeVirt, SSH guests)', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
    await stack.fillPool(ONE, 2);
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('replenishes each flavor to its warm target and records the state on the cluster', async () => {
    const pool = await stack.labvirt.service.poolStatus();
    const one = pool.flavors.find((f) => f.flavor === ONE)!;
    expect(one.counts.warm).toBe(2);
    expect(one.targetWarm).toBe(2);
    const namespaces = await stack.labvirt.context.cluster.listManagedNamespaces();
    const warm = namespaces.filter((ns) => ns.metadata?.labels?.['labvirt.io/state'] === 'warm');
    expect(warm).toHaveLength(2);
    // A second replenish changes nothing.
    await stack.labvirt.runMaintenance('replenish');
    expect((await stack.labvirt.store.countByState(ONE)).provisioning ?? 0).toBe(0);
  });

  it('starts a lab from the warm pool: key installed, setup run, connection details returned', async () => {
    const { service } = stack.labvirt;
    const started = await service.start({
      student: 'alice',
      labId: 'fixture-one',
      requestId: 'slack-1',
    });
    expect(started.state).toBe('claimed');
    expect(started.privateKey).toMatch(/BEGIN OPENSSH PRIVATE KEY/);
    const again = await service.start({
      student: 'alice',
      labId: 'fixture-one',
      requestId: 'slack-1',
    });
    expect(again.id).toBe(started.id);
    expect(again.privateKey).toBeUndefined();
    const active = await stack.untilSession(started.id, 'active');
    expect(active.connection).toMatchObject({
      mode: 'gateway',
      user: started.id,
      nodes: ['control-plane'],
    });
    expect(active.expiresAt).toBeDefined();
    // The session reads active a moment before the event goes out.
    await stack.until(
      async () =>
        stack.events.some((e) => e.type === 'session.ready' && e.sessionId === started.id),
      'session.ready event',
    );
    // The per-student limit holds.
    await expect(service.start({ student: 'alice', labId: 'fixture-one' })).rejects.toMatchObject({
      code: 'LIMIT_REACHED',
    });

    // Check: fails with the lab's FAIL: message, then hints, then stop.
    const check = await service.check(started.id);
    expect(check.passed).toBe(false);
    expect(check.checks[0]?.messages.join(' ')).toMatch(/FIXME/);
    const hint = await service.hint(started.id);
    expect(hint).toMatchObject({ index: 1, total: 2 });
    await expect(service.check(started.id, 'mallory')).rejects.toBeInstanceOf(LabvirtError);

    const stopped = await service.stop(started.id);
    expect(stopped.state).toBe('ended');
    await stack.until(
      async () => !(await stack.labvirt.store.getEnv(active.envId!)),
      'the released env to be deleted',
    );
    const ns = await stack.labvirt.context.cluster.getNamespace(`lab-${active.envId}`);
    expect(ns).toBeUndefined();
  });

  it('ends a teardown with its Namespace, even when the watch tells of the deletion before the delete is answered', async () => {
    const { service } = stack.labvirt;
    const started = await service.start({ student: 'tess', labId: 'fixture-one' });
    const active = await stack.untilSession(started.id, 'active');
    // The simulator removes the Namespace within milliseconds and answers the
    // DELETE 5 s later: the watch has dropped it before teardown reads it.
    stack.sim.faults.deleteAnswerDelayMs = 5000;
    try {
      await service.stop(started.id);
      // Before, the teardown took the Namespace it no longer watched for one
      // it had not heard of yet, and waited for its one-minute check.
      await stack.until(
        async () => !(await stack.labvirt.store.getEnv(active.envId!)),
        'the released env to be deleted',
        30_000,
      );
    } finally {
      stack.sim.faults.deleteAnswerDelayMs = 0;
    }
    expect(await stack.labvirt.context.cluster.getNamespace(`lab-${active.envId}`)).toBeUndefined();
  }, 60_000);
});
