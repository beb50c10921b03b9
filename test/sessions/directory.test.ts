import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkSessionChanges, sessionDirectory } from '../../src/sessions/directory.js';
import { checkEnvForRestarts } from '../../src/sessions/restarts.js';
import { connectClient, run } from '../sim-guest/fixtures.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

describe('the gateway keeps sessions in memory', () => {
  let stack: TestStack;
  let vmiLists = 0;
  beforeAll(async () => {
    // Two envs and no more: no provisioning runs (and lists VMIs) during the
    // tests; no NodePort sync either (it looks up an active env's nodes too).
    stack = await startTestStack({
      roles: { api: false, sync: false },
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 2, maxTotal: 2 },
        },
      },
    });
    stack.labvirt.context.cluster.onRequest((verb, resource) => {
      if (verb === 'list' && resource === 'VirtualMachineInstance') vmiLists++;
    });
    await stack.fillPool('v1.30-1node', 2, { timeoutMs: 60_000 });
  }, 90_000);
  afterAll(async () => stack?.stop());

  it('lets a student log in again without asking the cluster, and refuses them as soon as the session ends', async () => {
    const { service } = stack.labvirt;
    const started = await service.start({ student: 'dora', labId: 'fixture-one' });
    await stack.untilSession(started.id, 'active', 60_000);
    const login = () =>
      connectClient({
        port: stack.labvirt.gatewayPort!,
        username: started.id,
        privateKey: started.privateKey!,
      });
    const before = vmiLists;
    for (let i = 0; i < 3; i++) {
      const c = await login();
      expect((await run(c, 'echo in')).stdout).toBe('in\n');
      c.end();
    }
    // The first login looks the env's nodes up; the next ones are served from memory.
    expect(vmiLists - before).toBeLessThanOrEqual(1);

    await service.stop(started.id);
    await expect(login()).rejects.toThrow(/authentication/i);
  }, 90_000);

  it("applies another replica's change notices", async () => {
    const started = await stack.labvirt.service.start({ student: 'eli', labId: 'fixture-one' });
    await stack.untilSession(started.id, 'active', 60_000);
    const directory = sessionDirectory(stack.labvirt.store);
    const publisher = new Redis(stack.redis.url);
    const subscriber = new Redis(stack.redis.url);
    const channel = 'test:sessions-changed';
    const stop = await linkSessionChanges({
      directory,
      events: stack.labvirt.events,
      publisher,
      subscriber,
      channel,
    });
    try {
      expect(await directory.lookup(started.id)).toMatchObject({ student: 'eli' });
      expect(directory.size).toBe(1);
      // Another replica extended or ended it: this one forgets what it knew.
      const other = new Redis(stack.redis.url);
      await other.publish(channel, started.id);
      other.disconnect();
      await stack.until(async () => directory.size === 0, 'the notice to arrive', 5000);
    } finally {
      await stop();
      publisher.disconnect();
    }
  }, 90_000);

  it('takes a session activated before its nodes were recorded there through the cluster, in a process that has it', async () => {
    const { service, store } = stack.labvirt;
    // A fresh env in place of the first test's (the pool is kept at two).
    await stack.labvirt.runMaintenance('replenish');
    const started = await service.start({ student: 'fay', labId: 'fixture-one' });
    const active = await stack.untilSession(started.id, 'active', 120_000);
    // What a session activated by an older labvirt looks like: no nodes in Redis.
    const redis = new Redis(stack.redis.url);
    try {
      await redis.hdel(store.keys.session(started.id), 'guest:control-plane');
      expect((await store.getSession(started.id))?.guests).toBeUndefined();
      await redis.publish(
        `${stack.labvirt.context.config.redis.prefix}:sessions-changed`,
        started.id,
      );
      // The stack's gateway has the cluster: it finds the node there and hops with the env's key.
      const c = await stack.until(
        () =>
          connectClient({
            port: stack.labvirt.gatewayPort!,
            username: started.id,
            privateKey: started.privateKey!,
          }).catch(() => undefined),
        'a login',
      );
      expect((await run(c, 'hostname')).stdout).toBe('control-plane\n');
      c.end();
      // The orchestrator's next look at the env records the node again, for
      // gateways without the cluster.
      await checkEnvForRestarts(stack.labvirt.context, active.envId!);
      const guests = (await store.getSession(started.id))?.guests;
      expect(guests?.['control-plane']).toMatchObject({
        ip: expect.any(String),
        hostKey: expect.stringMatching(/^ssh-ed25519 /),
      });
    } finally {
      redis.disconnect();
      await service.stop(started.id);
    }
  }, 180_000);
});
