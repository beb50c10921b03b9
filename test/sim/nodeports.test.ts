import { ApiException, NetworkingV1Api, type V1Service } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../../src/kube/index.js';
import { greet, startSimHost, type SimHost, type StudentEnv } from '../helpers/student-envs.js';

const status = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (err: unknown) => (err instanceof ApiException ? err.code : -1),
  );

describe('sim: NodePorts of the student cluster and of the host', { timeout: 90_000 }, () => {
  let h: SimHost;
  let env: StudentEnv;

  beforeAll(async () => {
    h = await startSimHost();
    env = await h.startEnv('npsim001');
    await env.student.createNamespace({ body: { metadata: { name: 'shop' } } });
  }, 60_000);
  afterAll(async () => h?.close());

  const svc = (name: string, type: string, nodePort?: number): V1Service => ({
    metadata: { name },
    spec: {
      type,
      selector: { app: name },
      ports: [{ port: 80, targetPort: 8080 as never, ...(nodePort ? { nodePort } : {}) }],
    },
  });

  it('student cluster: a taken nodePort is 422, a ClusterIP Service may not carry one, type changes release and allocate', async () => {
    const a = await env.student.createNamespacedService({
      namespace: 'shop',
      body: svc('a', 'NodePort'),
    });
    const port = a.spec!.ports![0]!.nodePort!;
    expect(port).toBeGreaterThanOrEqual(30000);
    expect(port).toBeLessThanOrEqual(32767);
    expect(
      await status(
        env.student.createNamespacedService({
          namespace: 'shop',
          body: svc('b', 'NodePort', port),
        }),
      ),
    ).toBe(422);
    expect(
      await status(
        env.student.createNamespacedService({
          namespace: 'shop',
          body: svc('c', 'ClusterIP', 31111),
        }),
      ),
    ).toBe(422);

    // NodePort → ClusterIP: the port carried over is dropped and freed.
    const cur = await env.student.readNamespacedService({ namespace: 'shop', name: 'a' });
    cur.spec!.type = 'ClusterIP';
    const asClusterIp = await env.student.replaceNamespacedService({
      namespace: 'shop',
      name: 'a',
      body: cur,
    });
    expect(asClusterIp.spec!.ports![0]!.nodePort).toBeUndefined();
    const b = await env.student.createNamespacedService({
      namespace: 'shop',
      body: svc('b', 'NodePort', port),
    });
    expect(b.spec!.ports![0]!.nodePort).toBe(port);

    // ClusterIP → NodePort: a fresh port is allocated.
    asClusterIp.spec!.type = 'NodePort';
    const back = await env.student.replaceNamespacedService({
      namespace: 'shop',
      name: 'a',
      body: asClusterIp,
    });
    expect(back.spec!.ports![0]!.nodePort).toBeGreaterThanOrEqual(30000);
    expect(back.spec!.ports![0]!.nodePort).not.toBe(port);
  });

  it('host: a NodePort Service forwards to the selected VM’s guest listener, once a NetworkPolicy opens the port', async () => {
    await env.listen(env.controlPlane, 31080, 'cp');
    const created = await h.host.core.createNamespacedService({
      namespace: env.namespace,
      body: {
        metadata: { name: 'web-mirror' },
        spec: {
          type: 'NodePort',
          selector: { [LABELS.env]: env.envId },
          ports: [{ port: 80, targetPort: 31080 as never }],
        },
      },
    });
    const hostPort = created.spec!.ports![0]!.nodePort!;
    const nodes = (await h.host.core.listNode()).items;
    const address = nodes[0]!.status!.addresses!.find((a) => a.type === 'InternalIP')!.address;
    expect(address).toMatch(/^127\./);

    // The env's default-deny drops it.
    expect(await greet(address, hostPort)).toBe('closed');

    const net = h.host.kubeConfig.makeApiClient(NetworkingV1Api);
    await net.createNamespacedNetworkPolicy({
      namespace: env.namespace,
      body: {
        metadata: { name: 'open-31080' },
        spec: {
          podSelector: { matchLabels: { [LABELS.env]: env.envId } },
          policyTypes: ['Ingress'],
          ingress: [
            { _from: [{ ipBlock: { cidr: '0.0.0.0/0' } }], ports: [{ port: 31080 as never }] },
          ],
        },
      },
    });
    // Every node answers (as kube-proxy does), and the bytes come back from the guest.
    for (const n of nodes) {
      const ip = n.status!.addresses!.find((a) => a.type === 'InternalIP')!.address;
      expect(await greet(ip, hostPort)).toBe('hello from cp');
    }

    await h.host.core.deleteNamespacedService({ namespace: env.namespace, name: 'web-mirror' });
    await h.until(
      async () => (await greet(address, hostPort)) === 'ECONNREFUSED',
      'node port closed after the Service went',
    );
  });
});
