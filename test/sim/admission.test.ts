import { ApiException, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { itNeedsKubevirt, startTarget, type ConformanceTarget } from './target.js';

const message = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) return String(err.body as string);
    throw err;
  }
  throw new Error('the request was accepted');
};

/**
 * Admission as a real cluster applies it to what labvirt creates: LimitRange
 * defaults and maxima, ResourceQuota on compute and on object counts of
 * KubeVirt kinds, and on the launcher pods KubeVirt makes for VMs; and what
 * every namespace gets (kube-root-ca.crt). Runs on the sim and, with
 * LABVIRT_E2E_KUBECONFIG, on a real cluster.
 */
describe('conformance: admission (LimitRange, ResourceQuota) and namespace defaults', () => {
  let target: ConformanceTarget;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;

  beforeAll(async () => {
    target = await startTarget({ quotaStatusDelayMs: 50, namespaceDeleteDelayMs: 100 });
    core = target.kc.makeApiClient(CoreV1Api);
    custom = target.kc.makeApiClient(CustomObjectsApi);
  });
  afterAll(async () => {
    await target?.stop();
  });

  /** Creates, retrying while the new quota's status is still being computed. */
  const eventually = async <T>(fn: () => Promise<T>): Promise<T> => {
    for (let i = 0; ; i++) {
      try {
        return await fn();
      } catch (err) {
        const text = err instanceof ApiException ? String(err.body as string) : '';
        if (i > 200 || !text.includes('status unknown for quota')) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  /** The refusal once the new quota's status is known. */
  const refusal = async (fn: () => Promise<string>): Promise<string> => {
    for (let i = 0; ; i++) {
      const text = await fn();
      if (i > 200 || !text.includes('status unknown for quota')) return text;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const vm = (name: string, memory: string, running: boolean) => ({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name },
    spec: {
      runStrategy: running ? 'Always' : 'Halted',
      template: {
        metadata: { labels: { app: name } },
        spec: {
          domain: {
            cpu: { cores: 1 },
            memory: { guest: memory },
            resources: { limits: { cpu: '1' } },
            devices: { disks: [{ name: 'root', disk: { bus: 'virtio' } }] },
          },
          volumes: [
            {
              name: 'root',
              containerDisk: {
                image:
                  process.env.LABVIRT_E2E_VM_IMAGE ?? 'quay.io/kubevirt/cirros-container-disk-demo',
              },
            },
          ],
        },
      },
    },
  });

  it('gives every namespace the root CA as ConfigMap kube-root-ca.crt, and puts it back', async () => {
    const ns = await target.createNamespace('rootca');
    const read = () => core.readNamespacedConfigMap({ namespace: ns, name: 'kube-root-ca.crt' });
    await target.until(async () => Boolean((await read()).data?.['ca.crt']), 'kube-root-ca.crt');
    expect((await read()).data?.['ca.crt']).toContain('BEGIN CERTIFICATE');
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'kube-root-ca.crt' });
    await target.until(async () => Boolean((await read()).data?.['ca.crt']), 'republished');
    const system = (await core.listNamespace()).items.map((n) => n.metadata?.name);
    expect(system).toEqual(expect.arrayContaining(['default', 'kube-system', 'kube-public']));
  });

  it('applies LimitRange defaults to a container and refuses one above the maximum', async () => {
    const ns = await target.createNamespace('limits');
    await core.createNamespacedLimitRange({
      namespace: ns,
      body: {
        metadata: { name: 'limits' },
        spec: {
          limits: [
            {
              type: 'Container',
              max: { cpu: '1' },
              _default: { cpu: '100m' },
              defaultRequest: { cpu: '10m', memory: '16Mi' },
            },
          ],
        },
      },
    });
    const pod = await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'plain' },
        spec: { containers: [{ name: 'c', image: 'busybox' }] },
      },
    });
    expect(JSON.parse(JSON.stringify(pod.spec?.containers[0]?.resources))).toEqual({
      limits: { cpu: '100m' },
      requests: { cpu: '10m', memory: '16Mi' },
    });
    const big = await message(
      core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: 'big' },
          spec: {
            containers: [{ name: 'c', image: 'busybox', resources: { limits: { cpu: '2' } } }],
          },
        },
      }),
    );
    expect(big).toContain(
      'pods \\"big\\" is forbidden: maximum cpu usage per Container is 1, but limit is 2',
    );
  });

  it('refuses a pod that names no limit a quota counts, and counts KubeVirt objects by group', async () => {
    const ns = await target.createNamespace('quota');
    await core.createNamespacedResourceQuota({
      namespace: ns,
      body: {
        metadata: { name: 'q' },
        spec: { hard: { 'limits.cpu': '2', 'count/virtualmachines.kubevirt.io': '1' } },
      },
    });
    const unlimited = await refusal(() =>
      message(
        core.createNamespacedPod({
          namespace: ns,
          body: {
            metadata: { name: 'p' },
            spec: { containers: [{ name: 'web', image: 'nginx' }] },
          },
        }),
      ),
    );
    expect(unlimited).toMatch(
      /pods \\"p\\" is forbidden: failed quota: q: must specify limits\.cpu/,
    );
    const api = { group: 'kubevirt.io', version: 'v1', namespace: ns, plural: 'virtualmachines' };
    await eventually(() =>
      custom.createNamespacedCustomObject({ ...api, body: vm('one', '64Mi', false) }),
    );
    const second = await message(
      custom.createNamespacedCustomObject({ ...api, body: vm('two', '64Mi', false) }),
    );
    expect(second).toContain('exceeded quota: q');
    expect(second).toContain('count/virtualmachines.kubevirt.io');
  });

  it('words quota refusals with canonical quantities (100m, 64Mi), as the quota admission does', async () => {
    const ns = await target.createNamespace('canonical');
    await core.createNamespacedResourceQuota({
      namespace: ns,
      body: {
        metadata: { name: 'cpu' },
        spec: { hard: { 'requests.cpu': '0.1', 'requests.memory': '64Mi' } },
      },
    });
    const pod = (name: string, cpu: string, memory: string) =>
      core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name },
          spec: {
            containers: [{ name: 'c', image: 'nginx', resources: { requests: { cpu, memory } } }],
          },
        },
      });
    const text = await refusal(() => message(pod('big', '0.25', '128Mi')));
    expect(text).toContain(
      'exceeded quota: cpu, requested: requests.cpu=250m,requests.memory=128Mi, used: requests.cpu=0,requests.memory=0, limited: requests.cpu=100m,requests.memory=64Mi',
    );
  });

  it('counts NodePorts and load balancers of Services against services.nodeports', async () => {
    const ns = await target.createNamespace('nodeports');
    await core.createNamespacedResourceQuota({
      namespace: ns,
      body: {
        metadata: { name: 'np' },
        spec: { hard: { 'services.nodeports': '2', 'services.loadbalancers': '0' } },
      },
    });
    const svc = (name: string, type: string, ports: number[]) =>
      core.createNamespacedService({
        namespace: ns,
        body: {
          metadata: { name },
          spec: {
            type,
            selector: { app: name },
            ports: ports.map((port) => ({ name: `p${port}`, port })),
          },
        },
      });
    await eventually(() => svc('a', 'NodePort', [80, 81]));
    await svc('internal', 'ClusterIP', [80]);
    expect(await message(svc('b', 'NodePort', [80]))).toContain(
      'exceeded quota: np, requested: services.nodeports=1, used: services.nodeports=2',
    );
    expect(await message(svc('lb', 'LoadBalancer', [80]))).toContain('services.loadbalancers');
  });

  itNeedsKubevirt(
    'leaves a VMI whose launcher pod the quota refuses Pending with FailedCreate, until there is room',
    async () => {
      const ns = await target.createNamespace('launcher');
      await core.createNamespacedResourceQuota({
        namespace: ns,
        body: { metadata: { name: 'tight' }, spec: { hard: { 'requests.memory': '100Mi' } } },
      });
      await eventually(() =>
        core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'ready' } } }),
      );
      // A 128 MiB guest needs ~350 MiB of launcher: over the quota.
      await custom.createNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace: ns,
        plural: 'virtualmachines',
        body: vm('squeezed', '128Mi', true),
      });
      const vmiConditions = async () =>
        (
          (await custom.getNamespacedCustomObject({
            group: 'kubevirt.io',
            version: 'v1',
            namespace: ns,
            plural: 'virtualmachineinstances',
            name: 'squeezed',
          })) as {
            status?: {
              phase?: string;
              conditions?: { type: string; reason?: string; message?: string }[];
            };
          }
        ).status;
      await target.until(async () => {
        const status = await vmiConditions();
        return Boolean(
          status?.conditions?.some(
            (c) =>
              c.reason === 'FailedCreate' && (c.message ?? '').includes('exceeded quota: tight'),
          ),
        );
      }, 'FailedCreate naming the quota');
      expect((await core.listNamespacedPod({ namespace: ns })).items).toHaveLength(0);
      await core.deleteNamespacedResourceQuota({ namespace: ns, name: 'tight' });
      await target.until(
        async () => (await core.listNamespacedPod({ namespace: ns })).items.length === 1,
        'launcher pod created once the quota is gone',
      );
    },
  );
});
