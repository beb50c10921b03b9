import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envNamespace } from '../../src/kube/index.js';
import type { NodeName } from '../../src/pool/nodes.js';
import { runCli } from '../cli-client/fixtures/run-cli.js';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { TEST_SIGNING_SECRET } from '../helpers/slack-request.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { shownText, solveLab, startAsSlackUser, statusMessageOf } from '../slack/helpers.js';

/**
 * A node's VM restarts under an active session (a host drain, a crash): the
 * simulator replaces its VMI (new uid, guest booted afresh from its image),
 * labvirt notices through its shared VMI watch and tells the student.
 */
describe('a VM restarted during a session', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  const user = 'U0R01';

  beforeAll(async () => {
    fake = await startFakeSlack();
    stack = await startTestStack({
      slack: { botToken: 'xoxb-restart-test', signingSecret: TEST_SIGNING_SECRET },
      overrides: {
        slack: { apiUrl: fake.apiUrl },
        flavors: { 'v1.30-1node': { minWarm: 0 }, 'v1.30-3node': { minWarm: 1, maxTotal: 1 } },
      },
    });
    await stack.fillPool('v1.30-3node', 1, { timeoutMs: 90_000 });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });

  /** Runs a command on a node of the session's env as labvirt does. */
  const onNode = async (envId: string, node: NodeName, script: string): Promise<string> => {
    const ctx = stack.labvirt.context;
    const namespace = envNamespace(ctx.config, envId);
    const vmi = ctx.cluster.vmis().get(namespace, node);
    const ip = (await ctx.cluster.launcherAddresses(namespace)).get(vmi!.uid!)!;
    const result = await ctx.executor.exec({ envId, node, ip }, script, {
      timeoutMs: 10_000,
    });
    return result.stdout;
  };

  it('shows the restart once in the session view, the events and the Slack DM; the work on that node is gone', async () => {
    const { service, context, notifier, store } = stack.labvirt;
    const started = await startAsSlackUser(service, notifier!, user, 'fixture-three');
    const active = await stack.untilSession(started.id, 'active', 60_000);
    expect(active.nodeRestarts).toBeUndefined();
    const envId = active.envId!;
    const namespace = envNamespace(context.config, envId);

    // The student fixes the lab on worker-1; the check agrees.
    await solveLab(stack.labvirt, started.id);
    expect((await service.check(started.id)).passed).toBe(true);
    const solvedDm = await fake.waitFor(() => {
      const m = statusMessageOf(fake, user);
      return m && /Solved!/.test(shownText(m)) ? m : undefined;
    }, 'the solved DM');
    expect(shownText(statusMessageOf(fake, user)!)).not.toContain('restarted');

    const oldUid = stack.sim.store.get('virtualmachineinstances', namespace, 'worker-1')!.metadata
      .uid!;
    stack.sim.faults.restartVm(namespace, 'worker-1');

    const view = await stack.until(async () => {
      const v = await service.status(started.id);
      return v.nodeRestarts?.length ? v : undefined;
    }, 'the restart in the session view');
    expect(view.state).toBe('active');
    expect(view.nodeRestarts).toEqual([{ node: 'worker-1', at: expect.any(String) }]);
    expect(Date.parse(view.nodeRestarts![0]!.at)).toBeGreaterThan(Date.parse(active.readyAt!));

    // Through the HTTP API and `labvirt status`, as the student sees it.
    const res = await fetch(`${stack.labvirt.apiUrl}/v1/sessions/${started.id}`, {
      headers: { authorization: `Bearer ${stack.apiToken}` },
    });
    expect(((await res.json()) as { nodeRestarts?: unknown }).nodeRestarts).toEqual(
      view.nodeRestarts,
    );
    const status = await runCli(['status', started.id], {
      LABVIRT_API_URL: stack.labvirt.apiUrl,
      LABVIRT_API_TOKEN: stack.apiToken,
      LABVIRT_CONFIG: undefined,
    });
    expect(status.stdout).toContain(
      `restart:  worker-1 restarted at ${view.nodeRestarts![0]!.at}: its disk was reset, your changes on it are gone`,
    );

    const dm = await fake.waitFor(() => {
      const m = statusMessageOf(fake, user);
      return m && /worker-1 restarted at/.test(shownText(m)) ? m : undefined;
    }, 'the restart in the DM status message');
    expect(shownText(dm)).toContain('its disk was reset, your changes on it are gone');
    // Edited in place: still the one status message.
    expect(dm.ts).toBe(solvedDm.ts);

    // The new VM comes up from its image: the fix is gone, the check says so,
    // and the student's key is back on it so they can still log in there.
    const session = await store.getSession(started.id);
    await stack.until(
      async () => {
        const keys = await onNode(
          envId,
          'worker-1',
          'cat "${LABVIRT_GUEST_ROOT:-}/home/student/.ssh/authorized_keys" 2>/dev/null || true',
        ).catch(() => '');
        return keys.includes(session!.publicKey.split(' ')[1]!);
      },
      "the student's key on the new worker-1",
      60_000,
    );
    expect(
      await onNode(
        envId,
        'worker-1',
        'cat "${LABVIRT_GUEST_ROOT:-}/etc/fixture/state" || echo none',
      ),
    ).toContain('none');
    expect((await service.check(started.id)).passed).toBe(false);

    // Once: status changes of the new VMI, a full relist of the watch and a
    // replica whose watch still shows the old VMI report nothing more.
    context.cluster.vmis().requestRelist();
    await new Promise((r) => setTimeout(r, 1000));
    expect(
      await store.recordNodeVmis(started.id, {
        envId,
        at: Date.now(),
        nodes: [{ node: 'worker-1', uid: oldUid }],
      }),
    ).toEqual([]);
    const reported = stack.events.filter((e) => e.type === 'session.node-restarted');
    expect(reported).toEqual([
      {
        type: 'session.node-restarted',
        sessionId: started.id,
        student: started.student,
        envId,
        node: 'worker-1',
        at: view.nodeRestarts![0]!.at,
      },
    ]);
    expect((await service.status(started.id)).nodeRestarts).toHaveLength(1);
    // The other nodes kept their VMs and are not reported.
    expect(view.nodeRestarts!.map((r) => r.node)).not.toContain('control-plane');
  }, 180_000);

  it('reports a second restart (the control plane, through POST /sim/faults) after the first, and lets the student back in', async () => {
    const { service, store } = stack.labvirt;
    const [session] = await service.list({ student: `T0001.${user}` });
    expect(session?.state).toBe('active');
    const envId = session!.envId!;
    const namespace = envNamespace(stack.labvirt.context.config, envId);
    // As another process would: HTTPS with the sim's CA and token.
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        `${stack.sim.url}/sim/faults`,
        {
          method: 'POST',
          ca: stack.sim.caPem,
          headers: {
            authorization: `Bearer ${stack.sim.token}`,
            'content-type': 'application/json',
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ restartVm: `${namespace}/control-plane` }));
    });
    expect(status).toBe(200);
    const view = await stack.until(async () => {
      const v = await service.status(session!.id);
      return (v.nodeRestarts?.length ?? 0) >= 2 ? v : undefined;
    }, 'the second restart in the session view');
    expect(view.nodeRestarts!.map((r) => r.node)).toEqual(['worker-1', 'control-plane']);
    expect(view.state).toBe('active');
    const publicKey = (await store.getSession(session!.id))!.publicKey.split(' ')[1]!;
    await stack.until(
      async () =>
        (
          await onNode(
            envId,
            'control-plane',
            'cat "${LABVIRT_GUEST_ROOT:-}/home/student/.ssh/authorized_keys" 2>/dev/null || true',
          ).catch(() => '')
        ).includes(publicKey),
      "the student's key on the new control plane",
      60_000,
    );
    await fake.waitFor(() => {
      const m = statusMessageOf(fake, user);
      return m && /control-plane restarted at/.test(shownText(m)) ? m : undefined;
    }, 'the second restart in the DM');
    expect(stack.events.filter((e) => e.type === 'session.node-restarted')).toHaveLength(2);
  }, 120_000);
});
