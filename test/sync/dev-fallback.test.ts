import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { activeSessionWithStudentApi, exposeWeb, greet } from '../helpers/student-envs.js';

/**
 * `labvirt dev` on a machine whose openssl is not under /usr: its sandboxed
 * guests see only the host's /usr, so the sync's TLS relay could not run in
 * them. dev then keeps the TLS in labvirt (`sync.apiTls: labvirt`) and a
 * student's NodePort Service is still mirrored. Here the host's openssl is
 * hidden by PATH (only /bin and /sbin, which on this merged-/usr machine
 * hold the same programs under names that do not start with /usr/) while
 * the stack starts.
 */
describe('NodePort sync in `labvirt dev` without openssl under /usr', { timeout: 90_000 }, () => {
  let stack: TestStack;
  const closers: (() => void | Promise<void>)[] = [];

  beforeAll(async () => {
    const path = process.env.PATH;
    process.env.PATH = '/bin:/sbin';
    try {
      stack = await startTestStack({
        overrides: {
          flavors: {
            'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 2 },
          },
          sync: { retryInitialSeconds: 0.05, retryMaxSeconds: 0.5 },
        },
      });
    } finally {
      process.env.PATH = path;
    }
    await stack.fillPool('v1.30-1node', 1, { timeoutMs: 90_000 });
  }, 120_000);
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    await stack?.stop();
  });

  it('keeps the TLS in labvirt, starts no relay in the guest, and still mirrors the student’s Service', async () => {
    expect(stack.labvirt.context.config.sync.apiTls).toBe('labvirt');
    const { session, controlPlane, api } = await activeSessionWithStudentApi(
      stack,
      { student: 'ola', labId: 'fixture-one' },
      closers,
    );
    const ctx = stack.labvirt.context;
    await exposeWeb(api, ctx.executor, controlPlane, 'ola’s web', closers);

    const view = await stack.until(async () => {
      const v = await stack.labvirt.service.status(session.id);
      return v.ports?.published.length === 1 && v;
    }, 'the Service published');
    const [host, port] = view.ports!.published[0]!.address.split(':');
    expect(await greet(host!, Number(port))).toBe('hello from ola’s web');

    // The watch is open now, and no relay runs for it on the control plane.
    const ps = await ctx.executor.exec(controlPlane, 'ps -eo args', { timeoutMs: 10_000 });
    expect(ps.exitCode).toBe(0);
    expect(ps.stdout).not.toMatch(/labvirt-sync-relay/);
  }, 180_000);
});
