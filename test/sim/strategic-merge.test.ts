import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { strategicMergePatch } from '../../src/sim/strategic-merge.js';
import { ApiError } from '../../src/sim/store.js';

const strategic = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

/** Strategic merge patch as a client sees it: through @kubernetes/client-node over HTTPS. */
describe('simulated host cluster: strategic merge patch', () => {
  let sim: SimHandle;
  let dir: string;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  const namespace = 'smp';

  const failure = async (p: Promise<unknown>): Promise<{ code: number; body: string }> => {
    try {
      await p;
    } catch (err) {
      if (err instanceof ApiException) return { code: err.code, body: String(err.body) };
      throw err;
    }
    return { code: 200, body: '' };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-smp-'));
    sim = await startSim({ dir, speed: 200, nodes: 1 });
    const kc = new KubeConfig();
    kc.loadFromFile(sim.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('merges pod containers by name: one image changes, the other container and its env stay', async () => {
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'web' },
        spec: {
          containers: [
            { name: 'app', image: 'nginx:1.25', env: [{ name: 'MODE', value: 'prod' }] },
            { name: 'sidecar', image: 'busybox:1.36', env: [{ name: 'LOG', value: 'debug' }] },
          ],
          tolerations: [{ key: 'a', operator: 'Exists' }],
        },
      },
    });
    // An image is one of the few pod spec fields a real server lets a patch change.
    const pod = await core.patchNamespacedPod(
      {
        namespace,
        name: 'web',
        body: { spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] } },
      },
      strategic,
    );
    expect(pod.spec?.containers.map((c) => [c.name, c.image])).toEqual([
      ['app', 'nginx:1.27'],
      ['sidecar', 'busybox:1.36'],
    ]);
    expect(pod.spec?.containers[0]?.env).toEqual([{ name: 'MODE', value: 'prod' }]);
    expect(pod.spec?.containers[1]?.env).toEqual([{ name: 'LOG', value: 'debug' }]);
    expect(pod.spec?.tolerations).toEqual([{ key: 'a', operator: 'Exists' }]);
  });

  it('merges pod status conditions by type through /status', async () => {
    await core.patchNamespacedPodStatus(
      {
        namespace,
        name: 'web',
        body: {
          status: {
            conditions: [
              { type: 'PodScheduled', status: 'True' },
              { type: 'Ready', status: 'False' },
            ],
          },
        },
      },
      strategic,
    );
    const pod = await core.patchNamespacedPodStatus(
      {
        namespace,
        name: 'web',
        body: { status: { conditions: [{ type: 'Ready', status: 'True' }] } },
      },
      strategic,
    );
    expect(pod.status?.conditions?.map((c) => [c.type, c.status])).toEqual([
      ['PodScheduled', 'True'],
      ['Ready', 'True'],
    ]);
  });

  it('merges Service ports by port, deletes one with $patch: delete, replaces all with $patch: replace', async () => {
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'svc' },
        spec: {
          selector: { app: 'web' },
          ports: [
            { name: 'ssh', port: 22, targetPort: 22 },
            { name: 'http', port: 80, targetPort: 80 },
          ],
        },
      },
    });
    const merged = await core.patchNamespacedService(
      {
        namespace,
        name: 'svc',
        body: {
          spec: {
            ports: [
              { port: 80, targetPort: 8080 },
              { name: 'https', port: 443, targetPort: 8443 },
            ],
          },
        },
      },
      strategic,
    );
    expect(merged.spec?.ports?.map((p) => [p.name, p.port, p.targetPort])).toEqual([
      ['ssh', 22, 22],
      ['http', 80, 8080],
      ['https', 443, 8443],
    ]);
    expect(merged.spec?.selector).toEqual({ app: 'web' });

    const deleted = await core.patchNamespacedService(
      { namespace, name: 'svc', body: { spec: { ports: [{ port: 22, $patch: 'delete' }] } } },
      strategic,
    );
    expect(deleted.spec?.ports?.map((p) => p.port)).toEqual([80, 443]);

    const replaced = await core.patchNamespacedService(
      {
        namespace,
        name: 'svc',
        body: { spec: { ports: [{ $patch: 'replace' }, { name: 'web', port: 8080 }] } },
      },
      strategic,
    );
    expect(replaced.spec?.ports?.map((p) => [p.name, p.port])).toEqual([['web', 8080]]);
  });

  it('replaces a list without a patch strategy whole and merges one with a merge key', async () => {
    await core.createNamespacedServiceAccount({
      namespace,
      body: {
        metadata: { name: 'robot' },
        secrets: [{ name: 'token-a' }],
        imagePullSecrets: [{ name: 'registry-a' }],
      },
    });
    const sa = await core.patchNamespacedServiceAccount(
      {
        namespace,
        name: 'robot',
        body: { secrets: [{ name: 'token-b' }], imagePullSecrets: [{ name: 'registry-b' }] },
      },
      strategic,
    );
    // `secrets` is patchStrategy:"merge" by name; new items go first, as the real merge orders them.
    expect(sa.secrets?.map((s) => s.name)).toEqual(['token-b', 'token-a']);
    // `imagePullSecrets` of a ServiceAccount has no strategy (unlike a Pod's).
    expect(sa.imagePullSecrets?.map((s) => s.name)).toEqual(['registry-b']);
  });

  it('replaces Node taints whole: they have no patch strategy', async () => {
    const name = 'sim-node-1';
    await core.patchNode(
      { name, body: { spec: { taints: [{ key: 'a', effect: 'NoSchedule' }] } } },
      strategic,
    );
    const node = await core.patchNode(
      { name, body: { spec: { taints: [{ key: 'b', effect: 'NoExecute' }] } } },
      strategic,
    );
    expect(node.spec?.taints).toEqual([{ key: 'b', effect: 'NoExecute' }]);
    expect(node.status?.addresses?.some((a) => a.type === 'Hostname')).toBe(true);
  });

  it('merges finalizers as a set, deletes with $deleteFromPrimitiveList and orders with $setElementOrder', async () => {
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'held', finalizers: ['example.com/a'] }, data: { k: 'v' } },
    });
    const union = await core.patchNamespacedConfigMap(
      {
        namespace,
        name: 'held',
        body: { metadata: { finalizers: ['example.com/b', 'example.com/a'] } },
      },
      strategic,
    );
    expect(union.metadata?.finalizers).toEqual(['example.com/b', 'example.com/a']);

    const ordered = await core.patchNamespacedConfigMap(
      {
        namespace,
        name: 'held',
        body: {
          metadata: {
            '$setElementOrder/finalizers': ['example.com/a', 'example.com/c', 'example.com/b'],
            finalizers: ['example.com/c'],
          },
        },
      },
      strategic,
    );
    expect(ordered.metadata?.finalizers).toEqual([
      'example.com/a',
      'example.com/c',
      'example.com/b',
    ]);

    const pruned = await core.patchNamespacedConfigMap(
      {
        namespace,
        name: 'held',
        body: {
          metadata: { '$deleteFromPrimitiveList/finalizers': ['example.com/a', 'example.com/c'] },
        },
      },
      strategic,
    );
    expect(pruned.metadata?.finalizers).toEqual(['example.com/b']);
    expect(pruned.data).toEqual({ k: 'v' });
  });

  it('refuses a stale metadata.resourceVersion with 409 Conflict', async () => {
    const cm = await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'versioned' } },
    });
    await core.patchNamespacedConfigMap(
      { namespace, name: 'versioned', body: { data: { a: '1' } } },
      strategic,
    );
    const stale = await failure(
      core.patchNamespacedConfigMap(
        {
          namespace,
          name: 'versioned',
          body: { metadata: { resourceVersion: cm.metadata!.resourceVersion }, data: { a: '2' } },
        },
        strategic,
      ),
    );
    expect(stale.code).toBe(409);
    expect(stale.body).toContain('the object has been modified');
    const now = await core.readNamespacedConfigMap({ namespace, name: 'versioned' });
    expect(now.data).toEqual({ a: '1' });
  });

  it('answers malformed directives as the real server does: 400 for list directives, 500 for an unknown $patch', async () => {
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'bad' }, data: { x: 'y' } },
    });
    const noField = await failure(
      core.patchNamespacedConfigMap(
        { namespace, name: 'bad', body: { metadata: { $deleteFromPrimitiveList: ['x'] } } },
        strategic,
      ),
    );
    expect(noField.code).toBe(400);
    expect(JSON.parse(noField.body)).toMatchObject({
      reason: 'BadRequest',
      message: 'invalid patch format of primitive list',
    });
    const order = await failure(
      core.patchNamespacedConfigMap(
        { namespace, name: 'bad', body: { metadata: { $setElementOrder: ['x'] } } },
        strategic,
      ),
    );
    expect(order.code).toBe(400);
    expect(order.body).toContain('invalid patch format of setElementOrder list');
    const retain = await failure(
      core.patchNamespacedConfigMap(
        { namespace, name: 'bad', body: { $retainKeys: ['metadata'], data: { a: 'b' } } },
        strategic,
      ),
    );
    expect(retain.code).toBe(400);
    expect(retain.body).toContain('invalid patch format of retainKeys');
    // The real server does not convert this error: 500 with the merge's own message.
    const unknown = await failure(
      core.patchNamespacedConfigMap(
        { namespace, name: 'bad', body: { data: { $patch: 'bogus' } } },
        strategic,
      ),
    );
    expect(unknown.code).toBe(500);
    expect(JSON.parse(unknown.body)).toMatchObject({
      message: 'unknown patch type: bogus in map: map[$patch:bogus]',
    });
  });

  it('refuses strategic merge patch on a KubeVirt VirtualMachine with 415, as for any custom resource', async () => {
    const vm = {
      group: 'kubevirt.io',
      version: 'v1',
      namespace,
      plural: 'virtualmachines',
    };
    await custom.createNamespacedCustomObject({
      ...vm,
      body: {
        apiVersion: 'kubevirt.io/v1',
        kind: 'VirtualMachine',
        metadata: { name: 'vm1', labels: { app: 'vm1' } },
        spec: {
          runStrategy: 'Halted',
          template: {
            spec: { domain: { cpu: { cores: 1 }, memory: { guest: '1Gi' }, devices: {} } },
          },
        },
      },
    });
    for (const name of ['vm1', 'missing']) {
      const refused = await failure(
        custom.patchNamespacedCustomObject(
          { ...vm, name, body: { metadata: { labels: { app: 'changed' } } } },
          strategic,
        ),
      );
      expect(refused.code).toBe(415);
      expect(JSON.parse(refused.body)).toMatchObject({
        reason: 'UnsupportedMediaType',
        message:
          'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
      });
    }
    const merged = (await custom.patchNamespacedCustomObject(
      { ...vm, name: 'vm1', body: { metadata: { labels: { app: 'changed' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )) as { metadata: { labels: Record<string, string> } };
    expect(merged.metadata.labels).toEqual({ app: 'changed' });
  });
});

describe('strategicMergePatch', () => {
  const pod = () => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', labels: { a: '1', b: '2' } },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'nginx',
          env: [
            { name: 'A', value: '1' },
            { name: 'B', value: '2' },
          ],
          ports: [{ containerPort: 80, protocol: 'TCP' }],
        },
        { name: 'sidecar', image: 'busybox' },
      ],
      volumes: [{ name: 'data', emptyDir: {} }],
      tolerations: [{ key: 'x', operator: 'Exists' }],
    },
  });
  type PodLike = ReturnType<typeof pod>;
  const apply = (patch: unknown, original: unknown = pod()) =>
    strategicMergePatch('Pod', original, patch) as PodLike;
  const thrown = (fn: () => unknown): ApiError => {
    try {
      fn();
    } catch (err) {
      if (err instanceof ApiError) return err;
      throw err;
    }
    throw new Error('expected an ApiError');
  };

  it('does not change its inputs', () => {
    const original = pod();
    const patch = { spec: { containers: [{ name: 'app', image: 'httpd' }, { name: 'new' }] } };
    const before = [JSON.stringify(original), JSON.stringify(patch)];
    apply(patch, original);
    expect([JSON.stringify(original), JSON.stringify(patch)]).toEqual(before);
  });

  it('adds a container by name before the others, and keeps them', () => {
    const out = apply({ spec: { containers: [{ name: 'extra', image: 'redis' }] } });
    expect(out.spec.containers.map((c) => c.name)).toEqual(['extra', 'app', 'sidecar']);
    expect(out.spec.containers[1]).toEqual(pod().spec.containers[0]);
  });

  it('merges env by name inside a container merged by name, and null deletes a field of an element', () => {
    const out = apply({
      spec: {
        containers: [
          {
            name: 'app',
            env: [
              { name: 'B', value: '3' },
              { name: 'A', value: null, valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            ],
          },
        ],
      },
    });
    // Every item is in the patch, so the patch's order wins.
    expect(out.spec.containers[0]!.env).toEqual([
      { name: 'B', value: '3' },
      { name: 'A', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ]);
    expect(out.spec.containers[0]!.ports).toEqual([{ containerPort: 80, protocol: 'TCP' }]);
  });

  it('replaces lists without a strategy: Pod tolerations, Node taints; merges Node addresses by type', () => {
    expect(
      apply({ spec: { tolerations: [{ key: 'y', operator: 'Exists' }] } }).spec.tolerations,
    ).toEqual([{ key: 'y', operator: 'Exists' }]);
    const node = {
      metadata: { name: 'n1' },
      spec: { taints: [{ key: 'a', effect: 'NoSchedule' }], podCIDRs: ['10.0.0.0/24'] },
      status: {
        addresses: [
          { type: 'InternalIP', address: '10.1.0.1' },
          { type: 'Hostname', address: 'n1' },
        ],
      },
    };
    const out = strategicMergePatch('Node', node, {
      spec: { taints: [{ key: 'b', effect: 'NoExecute' }], podCIDRs: ['fd00::/64'] },
      status: { addresses: [{ type: 'InternalIP', address: '10.1.0.2' }] },
    }) as typeof node;
    expect(out.spec.taints).toEqual([{ key: 'b', effect: 'NoExecute' }]);
    expect(out.spec.podCIDRs).toEqual(['fd00::/64', '10.0.0.0/24']);
    expect(out.status.addresses).toEqual([
      { type: 'InternalIP', address: '10.1.0.2' },
      { type: 'Hostname', address: 'n1' },
    ]);
  });

  it('honours $setElementOrder for objects and keeps server-only items in place', () => {
    const out = apply({
      spec: {
        '$setElementOrder/containers': [{ name: 'sidecar' }, { name: 'extra' }, { name: 'app' }],
        containers: [{ name: 'extra', image: 'redis' }],
      },
    });
    expect(out.spec.containers.map((c) => c.name)).toEqual(['sidecar', 'extra', 'app']);
  });

  it('orders a kubectl-apply style patch (delete + add + $setElementOrder) as the real server does', () => {
    const svc = {
      spec: { ports: [{ port: 22 }, { port: 80 }, { port: 9000, name: 'server-only' }] },
    };
    const out = strategicMergePatch('Service', svc, {
      spec: {
        '$setElementOrder/ports': [{ port: 80 }, { port: 443 }],
        ports: [{ port: 443 }, { port: 22, $patch: 'delete' }],
      },
    }) as typeof svc;
    // The real merge orders against the live list as its in-place delete and
    // append left it ([80, 9000, 443]), so the server-only port lands before 443.
    expect(out.spec.ports.map((p) => p.port)).toEqual([80, 9000, 443]);
  });

  it('applies $retainKeys to a volume switching source, and $patch on maps', () => {
    const out = apply({
      spec: {
        volumes: [{ name: 'data', hostPath: { path: '/srv' }, $retainKeys: ['name', 'hostPath'] }],
      },
      metadata: { labels: { $patch: 'replace', c: '3' } },
    });
    expect(out.spec.volumes).toEqual([{ name: 'data', hostPath: { path: '/srv' } }]);
    expect(out.metadata.labels).toEqual({ c: '3' });
    expect(apply({ metadata: { labels: { $patch: 'delete' } } }).metadata.labels).toEqual({});
  });

  it('drops an added subtree that carries $patch, as the real merge does', () => {
    const original = { metadata: { name: 'cm' } };
    const out = strategicMergePatch('ConfigMap', original, {
      metadata: { labels: { $patch: 'replace', a: '1' } },
      data: { k: 'v' },
    });
    expect(out).toEqual({ metadata: { name: 'cm' }, data: { k: 'v' } });
  });

  it('merges ownerReferences by uid', () => {
    const ref = (uid: string, name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', name, uid });
    const out = strategicMergePatch(
      'Secret',
      { metadata: { name: 's', ownerReferences: [ref('u1', 'one'), ref('u3', 'three')] } },
      { metadata: { ownerReferences: [ref('u1', 'renamed'), ref('u2', 'two')] } },
    ) as { metadata: { ownerReferences: { name: string }[] } };
    // u3 came after u1 on the server, so it stays after it; u2 is new and not placed by the server.
    expect(out.metadata.ownerReferences.map((r) => r.name)).toEqual(['renamed', 'two', 'three']);
  });

  it('fails like the real merge: missing merge key, $patch: merge, lists of lists, custom kinds', () => {
    const missing = thrown(() => apply({ spec: { containers: [{ image: 'nginx' }] } }));
    expect([missing.code, missing.message]).toEqual([
      500,
      'map: map[image:nginx] does not contain declared merge key: name',
    ]);
    const merge = thrown(() => apply({ spec: { $patch: 'merge' } }));
    expect([merge.code, merge.message]).toEqual([
      500,
      'unknown patch type: merge in map: map[$patch:merge]',
    ]);
    const listMerge = thrown(() => apply({ spec: { containers: [{ $patch: 'merge' }] } }));
    expect(listMerge.message).toBe('merging lists cannot yet be specified in the patch');
    const nested = { metadata: { finalizers: [] } };
    expect(thrown(() => apply({ metadata: { finalizers: [['a']] } }, nested)).code).toBe(422);
    const mixed = thrown(() =>
      apply({ metadata: { finalizers: [1] } }, { metadata: { finalizers: ['a'] } }),
    );
    expect([mixed.code, mixed.message]).toEqual([
      500,
      'list element types are not identical: [[a] [1]]',
    ]);
    expect(thrown(() => apply([1])).code).toBe(400);
    const custom = thrown(() => strategicMergePatch('VirtualMachine', {}, {}));
    expect([custom.code, custom.reason]).toEqual([415, 'UnsupportedMediaType']);
  });
});
