import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const ONE = 'v1.30-1node';

/** Operators' pool actions through the HTTP API, against real Redis and the simulator. */
describe('pool actions over /v1/pool', () => {
  let stack: TestStack;
  const call = async (method: string, path: string, body?: unknown, student?: string) => {
    const res = await fetch(`${stack.labvirt.apiUrl}/v1${path}`, {
      method,
      headers: {
        authorization: `Bearer ${stack.apiToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(student ? { 'x-labvirt-student': student } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
    return { status: res.status, body: (await res.json()) as any };
  };
  const counts = async () => stack.labvirt.store.countByState(ONE);

  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: {
          [ONE]: { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 4 },
          'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
        },
      },
    });
    await stack.fillPool(ONE, 1, { timeoutMs: 60_000 });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('refuses a target above maxTotal, below 0, an unknown flavor and a student front end', async () => {
    const high = await call('PUT', `/pool/flavors/${ONE}/target`, { targetWarm: 5 });
    expect(high.status).toBe(400);
    expect(high.body.error.code).toBe('INVALID_REQUEST');
    expect(high.body.error.message).toMatch(/maxTotal \(4\)/);
    expect((await call('PUT', `/pool/flavors/${ONE}/target`, { targetWarm: -1 })).status).toBe(400);
    const unknown = await call('PUT', '/pool/flavors/v9.99-7node/target', { targetWarm: 1 });
    expect(unknown.body.error.code).toBe('UNKNOWN_FLAVOR');
    expect(unknown.status).toBe(422);
    expect((await call('POST', '/pool/flavors/v9.99-7node/drain')).body.error.code).toBe(
      'UNKNOWN_FLAVOR',
    );
    const asStudent = await call('POST', `/pool/flavors/${ONE}/drain`, undefined, 'alice');
    expect(asStudent.status).toBe(403);
    // Nothing changed: the configured target is still in force, the warm env still there.
    const pool = await call('GET', '/pool');
    const flavor = pool.body.flavors.find((f: { flavor: string }) => f.flavor === ONE);
    expect(flavor.targetWarm).toBe(1);
    expect(flavor.targetOverride).toBeUndefined();
    expect(await stack.warmCount(ONE)).toBe(1);
  });

  it('resizes a flavor at runtime: the pool fills to the new target, and back', async () => {
    const set = await call('PUT', `/pool/flavors/${ONE}/target`, { targetWarm: 3 });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ flavor: ONE, targetWarm: 3, targetOverride: 3, minWarm: 1 });
    await stack.fillPool(ONE, 3, { timeoutMs: 60_000 });
    // The target lives in Redis, where every replica's replenish reads it.
    expect(await stack.labvirt.store.warmTargetOverrides()).toEqual({ [ONE]: 3 });
    const cleared = await call('DELETE', `/pool/flavors/${ONE}/target`);
    expect(cleared.body).toMatchObject({ targetWarm: 1 });
    expect(cleared.body.targetOverride).toBeUndefined();
  }, 90_000);

  it('drains a flavor: warm envs go, the session in use stays, nothing refills', async () => {
    const session = await stack.labvirt.service.start({ student: 'dora', labId: 'fixture-one' });
    await stack.untilSession(session.id, 'active', 60_000);
    // Let the replenish the claim asked for finish: an env still booting would become warm later.
    await stack.until(
      async () => {
        const c = await counts();
        return (c.provisioning ?? 0) + (c.booting ?? 0) === 0;
      },
      'no env in flight',
      60_000,
    );
    const warmBefore = await stack.labvirt.store.warmEnvIds(ONE);
    expect(warmBefore.length).toBeGreaterThanOrEqual(1);

    const drained = await call('POST', `/pool/flavors/${ONE}/drain`);
    expect(drained.status).toBe(200);
    expect(drained.body.inUse).toBe(1);
    expect([...drained.body.tearingDown].sort()).toEqual([...warmBefore].sort());
    await stack.until(
      async () => {
        const c = await counts();
        return (c.warm ?? 0) === 0 && (c.releasing ?? 0) === 0;
      },
      'the warm envs to be deleted',
      60_000,
    );
    for (const envId of warmBefore) {
      expect(await stack.labvirt.context.cluster.getNamespace(`lab-${envId}`)).toBeUndefined();
    }
    await stack.labvirt.runMaintenance('replenish');
    const after = await counts();
    expect((after.provisioning ?? 0) + (after.booting ?? 0) + (after.warm ?? 0)).toBe(0);
    expect((await stack.labvirt.service.status(session.id)).state).toBe('active');
    const pool = await call('GET', '/pool');
    expect(pool.body.flavors.find((f: { flavor: string }) => f.flavor === ONE)).toMatchObject({
      targetWarm: 0,
      targetOverride: 0,
    });
    await stack.labvirt.service.stop(session.id);
  }, 120_000);

  it('deletes a failed env and refuses any other', async () => {
    await call('PUT', `/pool/flavors/${ONE}/target`, { targetWarm: 2 });
    await stack.fillPool(ONE, 2, { timeoutMs: 60_000 });
    const [healthy, broken] = await stack.labvirt.store.warmEnvIds(ONE);

    const refused = await call('DELETE', `/pool/envs/${healthy}`);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({
      code: 'ENV_NOT_FAILED',
      details: { state: 'warm' },
    });
    expect((await call('DELETE', '/pool/envs/zzzzzzzz')).body.error.code).toBe('ENV_NOT_FOUND');
    expect((await call('DELETE', '/pool/envs/NOT-AN-ID')).status).toBe(400);

    // An env whose teardown gave up stays `failed` (as after a host-cluster outage).
    expect(await stack.labvirt.store.setEnvState(broken!, 'failed', { expected: 'warm' })).toBe(
      true,
    );
    const deleted = await call('DELETE', `/pool/envs/${broken}`);
    expect(deleted.status).toBe(202);
    expect(deleted.body).toMatchObject({ id: broken, state: 'failed', flavor: ONE });
    await stack.until(
      async () => !(await stack.labvirt.store.getEnv(broken!)),
      'the failed env to be deleted',
      60_000,
    );
    expect(await stack.labvirt.context.cluster.getNamespace(`lab-${broken}`)).toBeUndefined();
    expect((await stack.labvirt.store.getEnv(healthy!))?.state).toBe('warm');
  }, 120_000);
});
