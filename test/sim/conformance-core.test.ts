import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException,
  ApisApi,
  CoreApi,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  VersionApi,
  Watch,
  setHeaderOptions,
  type V1Service,
} from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { itSimOnly, startTarget, statusCode, type ConformanceTarget } from './target.js';

/** The Status message of a refusal, unescaped, so patterns can quote names as the server does. */
const statusMessage = (err: ApiException<unknown>): string => {
  const body: unknown = err.body;
  try {
    const status = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: unknown };
    if (typeof status?.message === 'string') return status.message;
  } catch {
    /* not a Status: the raw body below */
  }
  return String(body);
};
const code = statusCode;
const message = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return '';
  } catch (err) {
    if (err instanceof ApiException) return statusMessage(err);
    throw err;
  }
};
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * Kubernetes API semantics, exercised only through @kubernetes/client-node: on the sim by
 * default, on a real cluster with LABVIRT_E2E_KUBECONFIG (see target.ts).
 */
describe('conformance: Kubernetes API semantics', () => {
  let target: ConformanceTarget;
  let core: CoreV1Api;

  beforeAll(async () => {
    target = await startTarget({
      speed: 200,
      // Small enough that a test can push a resourceVersion out of the watch window.
      historyLimit: 50,
      namespaceDeleteDelayMs: 200,
      quotaStatusDelayMs: 300,
    });
    core = target.kc.makeApiClient(CoreV1Api);
  });
  afterAll(async () => {
    await target?.stop();
  });

  itSimOnly(
    'refuses requests without the token (401) and serves HTTPS with its own CA',
    async () => {
      const sim = target.sim!;
      const anon = new KubeConfig();
      anon.loadFromOptions({
        clusters: [
          { name: 'c', server: sim.url, caData: Buffer.from(sim.caPem).toString('base64') },
        ],
        users: [{ name: 'u' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      expect(await code(anon.makeApiClient(CoreV1Api).listNamespace())).toBe(401);
      expect(sim.url).toMatch(/^https:\/\/127\.0\.0\.1:/);
    },
  );

  it('refuses a wrong bearer token with 401', async () => {
    // No token at all may be "system:anonymous" (403) on a real cluster; a bad one never is.
    const bad = new KubeConfig();
    bad.loadFromOptions({
      clusters: [target.kc.getCurrentCluster()!],
      users: [{ name: 'u', token: 'labvirt-conformance-not-a-token' }],
      contexts: [{ name: 'x', cluster: target.kc.getCurrentCluster()!.name, user: 'u' }],
      currentContext: 'x',
    });
    expect(await code(bad.makeApiClient(CoreV1Api).listNamespace())).toBe(401);
  });

  it('refuses a kubeconfig that is the localhost:8080 fallback or has no current context', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-conf-kc-'));
    const config = (server: string, currentContext?: string) =>
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server } }],
        users: [{ name: 'u', user: { token: 't' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        ...(currentContext ? { 'current-context': currentContext } : {}),
      });
    const attempt = async (yaml: string, context?: string): Promise<string> => {
      const path = join(dir, `kc-${Math.random().toString(36).slice(2)}`);
      writeFileSync(path, yaml);
      vi.stubEnv('LABVIRT_E2E_KUBECONFIG', path);
      vi.stubEnv('LABVIRT_E2E_CONTEXT', context);
      // onRealCluster is read when target.ts loads: a fresh copy sees the stubbed environment.
      vi.resetModules();
      const fresh = await import('./target.js');
      expect(fresh.onRealCluster).toBe(true);
      return fresh.startTarget().then(
        async (t) => {
          await t.stop();
          return 'accepted';
        },
        (err: unknown) => (err as Error).message,
      );
    };
    try {
      expect(await attempt(config('http://localhost:8080', 'x'))).toMatch(
        /refusing http:\/\/localhost:8080.*LABVIRT_E2E_KUBECONFIG/,
      );
      expect(await attempt(config('https://127.0.0.1:8080', 'x'))).toMatch(/refusing/);
      expect(await attempt(config('https://k8s.example.invalid:6443'))).toMatch(
        /no current context/,
      );
      expect(await attempt(config('https://k8s.example.invalid:6443'), 'nope')).toMatch(
        /LABVIRT_E2E_CONTEXT=nope is not a context .*have: x/,
      );
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves discovery for the core resources labvirt uses', async () => {
    expect((await target.kc.makeApiClient(CoreApi).getAPIVersions()).versions).toContain('v1');
    const resources = (await core.getAPIResources()).resources;
    const names = resources.map((r) => r.name);
    for (const name of [
      'namespaces',
      'secrets',
      'configmaps',
      'services',
      'pods',
      'events',
      'resourcequotas',
      'limitranges',
      'serviceaccounts',
      'namespaces/status',
    ])
      expect(names).toContain(name);
    expect(resources.find((r) => r.name === 'namespaces')).toMatchObject({
      kind: 'Namespace',
      namespaced: false,
    });
    expect(resources.find((r) => r.name === 'secrets')).toMatchObject({
      kind: 'Secret',
      namespaced: true,
    });
    expect(resources.find((r) => r.name === 'secrets')?.verbs).toEqual(
      expect.arrayContaining(['create', 'delete', 'get', 'list', 'patch', 'update', 'watch']),
    );
    const groups = (await target.kc.makeApiClient(ApisApi).getAPIVersions()).groups;
    expect(groups.find((g) => g.name === 'networking.k8s.io')?.versions).toContainEqual(
      expect.objectContaining({ groupVersion: 'networking.k8s.io/v1' }),
    );
    expect((await target.kc.makeApiClient(VersionApi).getCode()).major).toMatch(/^\d+$/);
  });

  it('creates, reads, lists with selectors and pages, and refuses stale updates with 409', async () => {
    const ns = await target.createNamespace('crud');
    for (let i = 0; i < 5; i++) {
      await core.createNamespacedSecret({
        namespace: ns,
        body: {
          metadata: { generateName: 's-', labels: { tier: i % 2 ? 'odd' : 'even', i: String(i) } },
        },
      });
    }
    // Selected by the label only ours carry: a real cluster may add secrets of its own.
    const ours = 'i';
    const all = await core.listNamespacedSecret({ namespace: ns, labelSelector: ours });
    expect(all.items).toHaveLength(5);
    expect(all.items.every((s) => /^s-[a-z0-9]{5}$/.test(s.metadata!.name!))).toBe(true);
    expect(
      (await core.listNamespacedSecret({ namespace: ns, labelSelector: 'tier=odd' })).items,
    ).toHaveLength(2);
    expect(
      (
        await core.listNamespacedSecret({
          namespace: ns,
          labelSelector: 'i in (0,1,2),tier!=odd',
        })
      ).items,
    ).toHaveLength(2);
    expect(
      (await core.listNamespacedSecret({ namespace: ns, labelSelector: `${ours},!missing` })).items,
    ).toHaveLength(5);
    expect(
      (await core.listNamespacedSecret({ namespace: ns, labelSelector: `${ours},!tier` })).items,
    ).toHaveLength(0);
    // A real server may return short pages, so follow continue tokens instead of counting pages.
    const pages: string[][] = [];
    let next: string | undefined;
    do {
      const page = await core.listNamespacedSecret({
        namespace: ns,
        labelSelector: ours,
        limit: 2,
        _continue: next,
      });
      expect(page.items.length).toBeLessThanOrEqual(2);
      pages.push(page.items.map((s) => s.metadata!.name!));
      next = page.metadata?._continue || undefined;
    } while (next && pages.length < 10);
    expect(next).toBeUndefined();
    expect(pages.length).toBeGreaterThanOrEqual(3);
    // The sim always fills a page.
    if (target.sim) expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    const names = pages.flat();
    expect(names).toHaveLength(5);
    expect(new Set(names).size).toBe(5);

    const first = all.items[0]!;
    const a = { ...first, data: { k: Buffer.from('a').toString('base64') } };
    const b = { ...first, data: { k: Buffer.from('b').toString('base64') } };
    const results = await Promise.allSettled([
      core.replaceNamespacedSecret({ namespace: ns, name: first.metadata!.name!, body: a }),
      core.replaceNamespacedSecret({ namespace: ns, name: first.metadata!.name!, body: b }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((rejected.reason as ApiException<string>).code).toBe(409);
    expect(statusMessage(rejected.reason as ApiException<string>)).toMatch(
      /the object has been modified; please apply your changes to the latest version and try again/,
    );
    expect(
      await code(
        core.createNamespacedSecret({
          namespace: ns,
          body: { metadata: { name: first.metadata!.name } },
        }),
      ),
    ).toBe(409);
    expect(await code(core.readNamespacedSecret({ namespace: ns, name: 'nope' }))).toBe(404);
  });

  it('merge-patches labels and keeps status out of main-resource writes', async () => {
    const ns = await target.createNamespace('patch', { team: 'a' });
    await core.patchNamespace(
      {
        name: ns,
        body: { metadata: { labels: { state: 'warm', team: null } }, status: { phase: 'Bogus' } },
      },
      merge,
    );
    const read = await core.readNamespace({ name: ns });
    expect(read.metadata?.labels).toMatchObject({ state: 'warm' });
    expect(read.metadata?.labels?.team).toBeUndefined();
    expect(read.status?.phase).toBe('Active');
  });

  it('resumes a watch from a resourceVersion', async () => {
    const ns = await target.createNamespace('watch');
    // Labelled, and watched by label: a real cluster adds kube-root-ca.crt to every namespace.
    const labels = { conformance: 'watch' };
    const created = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'one', labels } },
    });
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'two', labels } },
    });
    const seen: string[] = [];
    const req = await new Watch(target.kc).watch(
      `/api/v1/namespaces/${ns}/configmaps`,
      { resourceVersion: created.metadata!.resourceVersion, labelSelector: 'conformance=watch' },
      (type, obj: { metadata: { name: string } }) => seen.push(`${type} ${obj.metadata.name}`),
      () => undefined,
    );
    try {
      await core.deleteNamespacedConfigMap({ namespace: ns, name: 'one' });
      await target.until(async () => seen.includes('DELETED one'), 'the watch to see the delete');
      expect(seen[0]).toBe('ADDED two'); // resumed after "one"
      expect(seen).not.toContain('ADDED one');
    } finally {
      req.abort();
    }
  });

  it('answers 410 Expired to a watch from a resourceVersion older than the retained history', async () => {
    const ns = await target.createNamespace('expire');
    let old: string;
    if (target.sim) {
      // The sim keeps 50 changes here: push one resourceVersion past the window.
      const created = await core.createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name: 'one' } },
      });
      old = created.metadata!.resourceVersion!;
      for (let batch = 0; batch < 2; batch++) {
        await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            core.createNamespacedConfigMap({
              namespace: ns,
              body: { metadata: { name: `fill-${batch * 30 + i}` } },
            }),
          ),
        );
      }
    } else {
      // A real API server's watch cache begins where the server started, and etcd compacts every
      // few minutes: resourceVersion 1 is long gone.
      old = '1';
    }
    // The API server answers with an ERROR event carrying the Status; some answer the watch
    // request itself with HTTP 410 instead.
    let controller: AbortController | undefined;
    const outcome = await new Promise<{ event?: unknown; httpStatus?: number; other?: string }>(
      (resolve) => {
        void new Watch(target.kc)
          .watch(
            `/api/v1/namespaces/${ns}/configmaps`,
            // A server that still retains `old` would otherwise keep the stream open and idle.
            { resourceVersion: old, timeoutSeconds: 5 },
            (type, obj: { metadata?: { name?: string } }) => {
              if (type === 'ERROR') resolve({ event: obj });
              // A replay means the version is still retained: fail now, not at the idle timeout.
              else resolve({ other: `${type} ${obj.metadata?.name ?? ''}` });
            },
            (err: unknown) => {
              const httpStatus = (err as { statusCode?: number } | null)?.statusCode;
              resolve(httpStatus ? { httpStatus } : { other: `watch ended: ${String(err)}` });
            },
          )
          .then((c) => (controller = c));
      },
    );
    controller?.abort();
    if (target.kind === 'real' && outcome.httpStatus !== undefined)
      expect(outcome.httpStatus).toBe(410);
    else expect(outcome).toMatchObject({ event: { kind: 'Status', code: 410, reason: 'Expired' } });
  });

  it('deletes a namespace asynchronously: Terminating, refuses new content, then gone with its contents', async () => {
    const ns = await target.createNamespace('doomed');
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'x' } } });
    // Holds the namespace in Terminating on a real cluster, whose namespace controller may
    // otherwise finish before the next request.
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'hold', finalizers: ['labvirt.io/conformance-hold'] } },
    });
    await core.deleteNamespace({ name: ns });
    const terminating = await core.readNamespace({ name: ns });
    expect(terminating.status?.phase).toBe('Terminating');
    expect(terminating.metadata?.deletionTimestamp).toBeDefined();
    expect(
      await message(
        core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'y' } } }),
      ),
    ).toMatch(
      new RegExp(
        `secrets "y" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`,
      ),
    );
    // The namespace controller deletes the content but leaves finalizers to their owners: the
    // namespace waits for them, and says so.
    await target.until(async () => {
      const hold = await core.readNamespacedConfigMap({ namespace: ns, name: 'hold' });
      return hold.metadata?.deletionTimestamp !== undefined;
    }, 'held ConfigMap marked for deletion');
    expect(await code(core.readNamespacedSecret({ namespace: ns, name: 'x' }))).toBe(404);
    await target.until(async () => {
      const conditions = (await core.readNamespace({ name: ns })).status?.conditions ?? [];
      return conditions.some(
        (c) =>
          c.type === 'NamespaceFinalizersRemaining' &&
          c.status === 'True' &&
          (c.message ?? '').includes('labvirt.io/conformance-hold'),
      );
    }, 'namespace reports the finalizer it waits for');
    expect((await core.readNamespace({ name: ns })).status?.phase).toBe('Terminating');
    const release = await code(
      core.patchNamespacedConfigMap(
        { namespace: ns, name: 'hold', body: { metadata: { finalizers: null } } },
        merge,
      ),
    );
    expect(release).toBe(200);
    await target.until(
      async () => (await code(core.readNamespace({ name: ns }))) === 404,
      'namespace gone',
    );
    expect(await code(core.readNamespacedSecret({ namespace: ns, name: 'x' }))).toBe(404);
  });

  it('holds objects with finalizers until the last one is removed, and collects owned objects', async () => {
    const ns = await target.createNamespace('fin');
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'held', finalizers: ['example.com/hold'] } },
    });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'held' });
    const held = await core.readNamespacedConfigMap({ namespace: ns, name: 'held' });
    expect(held.metadata?.deletionTimestamp).toBeDefined();
    expect(held.metadata?.finalizers).toEqual(['example.com/hold']);
    await core.patchNamespacedConfigMap(
      { namespace: ns, name: 'held', body: { metadata: { finalizers: null } } },
      merge,
    );
    expect(await code(core.readNamespacedConfigMap({ namespace: ns, name: 'held' }))).toBe(404);

    const owner = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'owner' } },
    });
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: {
          name: 'owned',
          ownerReferences: [
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! },
          ],
        },
      },
    });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'owner' });
    await target.until(
      async () => (await code(core.readNamespacedSecret({ namespace: ns, name: 'owned' }))) === 404,
      'GC',
    );
  });

  it('allocates NodePorts and refuses a port already in use with 422', async () => {
    const ns = await target.createNamespace('svc');
    const service = (name: string, nodePort?: number): V1Service => ({
      metadata: { name },
      spec: { type: 'NodePort', ports: [{ port: 22, ...(nodePort ? { nodePort } : {}) }] },
    });
    const a = await core.createNamespacedService({ namespace: ns, body: service('a') });
    const port = a.spec!.ports![0]!.nodePort!;
    expect(port).toBeGreaterThanOrEqual(30000);
    expect(port).toBeLessThanOrEqual(32767);
    expect(isIP(a.spec?.clusterIP ?? '')).not.toBe(0);
    if (target.sim) expect(a.spec?.clusterIP).toMatch(/^10\.96\./);

    const clash = core.createNamespacedService({ namespace: ns, body: service('b', port) });
    expect(await code(clash)).toBe(422);
    expect(
      await message(core.createNamespacedService({ namespace: ns, body: service('c', port) })),
    ).toMatch(
      new RegExp(
        `Service "c" is invalid: spec.ports\\[0\\].nodePort: Invalid value: ${port}: provided port is already allocated`,
      ),
    );

    // An explicit port: on a shared real cluster any given one may be taken, so pick at random
    // and move on when the server says so.
    let chosen: V1Service | undefined;
    for (let i = 0; i < 20 && !chosen; i++) {
      const wanted = 30000 + Math.floor(Math.random() * 2768);
      try {
        chosen = await core.createNamespacedService({ namespace: ns, body: service('e', wanted) });
        expect(chosen.spec!.ports![0]!.nodePort).toBe(wanted);
      } catch (err) {
        if (!(err instanceof ApiException) || err.code !== 422) throw err;
        expect(statusMessage(err)).toMatch(/provided port is already allocated/);
      }
    }
    expect(chosen).toBeDefined();

    await core.deleteNamespacedService({ namespace: ns, name: 'a' });
    // A real API server releases the port as the delete returns; polled all the same, since a
    // port allocator repair loop is allowed to lag.
    let reuse: V1Service | undefined;
    await target.until(async () => {
      reuse = await core.createNamespacedService({ namespace: ns, body: service('d', port) });
      return true;
    }, `nodePort ${port} free again after its service is deleted`);
    expect(reuse!.spec!.ports![0]!.nodePort).toBe(port);
  });

  it('enforces ResourceQuota with the real messages once its status is computed', async () => {
    const ns = await target.createNamespace('quota');
    await core.createNamespacedResourceQuota({
      namespace: ns,
      body: { metadata: { name: 'q' }, spec: { hard: { secrets: '1' } } },
    });
    await target.until(
      async () =>
        Boolean(
          (await core.readNamespacedResourceQuota({ namespace: ns, name: 'q' })).status?.hard,
        ),
      'quota status',
    );
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'one' } } });
    const refused = core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'two' } },
    });
    expect(await message(refused)).toMatch(
      /secrets "two" is forbidden: exceeded quota: q, requested: secrets=1, used: secrets=1, limited: secrets=1/,
    );
  });

  // How long a new quota's status stays unknown is a timing the sim stretches on purpose; a real
  // quota controller usually wins the race against the next request.
  itSimOnly('refuses creates with "status unknown" right after a quota is created', async () => {
    const ns = await target.createNamespace('quota-early');
    await core.createNamespacedResourceQuota({
      namespace: ns,
      body: { metadata: { name: 'q' }, spec: { hard: { secrets: '1' } } },
    });
    expect(
      await message(
        core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'early' } } }),
      ),
    ).toMatch(/secrets "early" is forbidden: status unknown for quota: q, resources: secrets/);
    await target.until(
      async () =>
        Boolean(
          (await core.readNamespacedResourceQuota({ namespace: ns, name: 'q' })).status?.hard,
        ),
      'quota status',
    );
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'late' } } });
  });
});
