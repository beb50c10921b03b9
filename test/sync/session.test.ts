import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli-client/fixtures/run-cli.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import {
  activeSessionWithStudentApi,
  exposeWeb,
  greet,
  mirrorServices,
} from '../helpers/student-envs.js';

/**
 * The whole labvirt (Redis, workers, API, sync) against the sim: what a
 * student sees of the ports they expose, from `labvirt status` to a
 * connection on the address it prints.
 */
describe('NodePort sync in a running labvirt: what the student sees', { timeout: 90_000 }, () => {
  let stack: TestStack;
  const closers: (() => void | Promise<void>)[] = [];

  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 2 },
        },
        sync: { maxPortsPerEnv: 1, retryInitialSeconds: 0.05, retryMaxSeconds: 0.5 },
      },
    });
    // Generous bounds for a loaded machine (30 s was outgrown once at load 17–26).
    await stack.fillPool('v1.30-1node', 1, { timeoutMs: 90_000 });
  }, 120_000);
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    await stack?.stop();
  });

  it('lists `namespace/service:port → host:port` in the session view and `labvirt status`; the address answers; the end removes the mirrors', async () => {
    const { session, namespace, controlPlane, api } = await activeSessionWithStudentApi(
      stack,
      { student: 'sam', labId: 'fixture-one' },
      closers,
    );
    const ctx = stack.labvirt.context;

    // Nothing yet: the view says so.
    expect((await stack.labvirt.service.status(session.id)).ports).toEqual({
      published: [],
      refused: [],
    });

    const nodePort = await exposeWeb(api, ctx.executor, controlPlane, 'sam’s web', closers);
    // Mirrored before the second Service exists: Services created in the same
    // second (creationTimestamp's precision) are ordered by name, so `extra`
    // would otherwise take the one place.
    await stack.until(
      async () => (await stack.labvirt.service.status(session.id)).ports?.published.length === 1,
      'web published',
    );
    await api.createNamespacedService({
      namespace: 'demo',
      body: {
        metadata: { name: 'extra' },
        spec: { type: 'NodePort', selector: { app: 'extra' }, ports: [{ port: 81 }] },
      },
    });

    const view = await stack.until(async () => {
      const v = await stack.labvirt.service.status(session.id);
      return v.ports?.published.length === 1 && v.ports.refused.length === 1 && v;
    }, 'one published, one refused');
    const published = view.ports!.published[0]!;
    expect(published).toMatchObject({ service: 'demo/web', port: 80, studentNodePort: nodePort });
    expect(view.ports!.refused[0]!.message).toBe('extra:81 not published: at most 1 port per lab');
    const [host, port] = published.address.split(':');
    expect(await greet(host!, Number(port))).toBe('hello from sam’s web');

    // The API and the CLI show the same, as a student reads it.
    const cli = await runCli(['status', session.id], {
      LABVIRT_API_URL: stack.labvirt.apiUrl,
      LABVIRT_API_TOKEN: stack.apiToken,
      LABVIRT_CONFIG: undefined,
    });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`ports:    demo/web:80 → ${published.address}`);
    expect(cli.stdout).toContain('refused:  extra:81 not published: at most 1 port per lab');

    const refused = stack.events.filter((e) => e.type === 'sync.refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ sessionId: session.id, student: 'sam' });

    await stack.labvirt.service.stop(session.id);
    await stack.until(async () => {
      const ns = await ctx.cluster.getNamespace(namespace);
      if (!ns) return true;
      return (await mirrorServices(ctx.cluster.core, namespace)).length === 0;
    }, 'mirrors removed when the session ends');
    expect(await greet(host!, Number(port))).not.toBe('hello from sam’s web');
  }, 180_000);
});
