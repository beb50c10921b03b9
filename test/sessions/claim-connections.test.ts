import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envNamespace } from '../../src/kube/index.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

/**
 * A claim's SSH work (issue #12, labvirt's CPU per claim): one connection
 * per node, and the next command on the env — the NodePort sync's forward
 * to the student's cluster right after activation, a check — reuses it
 * while it is open instead of connecting again (a handshake is about 7 ms
 * of labvirt's CPU, bench/ssh-cost.bench.ts).
 */
describe('SSH connections of a claim', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: { 'v1.30-1node': { minWarm: 0 }, 'v1.30-3node': { minWarm: 1, maxTotal: 1 } },
      },
    });
    await stack.fillPool('v1.30-3node', 1, { timeoutMs: 90_000 });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('connects once to each node and reuses the connection for the commands after activation', async () => {
    const { service, context } = stack.labvirt;
    const { executor } = context;
    // A warm env holds no connection.
    await stack.until(async () => executor.openConnections === 0, 'warm env without connections');
    const before = executor.handshakes;

    const started = await service.start({ student: 'conn-student', labId: 'fixture-three' });
    const active = await stack.untilSession(started.id, 'active', 60_000);
    const envId = active.envId!;
    expect(executor.handshakes - before).toBe(3);

    // A command on the control plane right after activation, as the sync's
    // forward or a check sends one: no new handshake.
    const namespace = envNamespace(context.config, envId);
    const vmi = context.cluster.vmis().get(namespace, 'control-plane');
    const ip = (await context.cluster.launcherAddresses(namespace)).get(vmi!.uid!)!;
    const result = await executor.exec({ envId, node: 'control-plane', ip }, 'echo reused', {
      timeoutMs: 10_000,
    });
    expect(result.stdout.trim()).toBe('reused');
    expect(executor.handshakes - before).toBe(3);
  }, 90_000);
});
