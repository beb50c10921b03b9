import { Writable } from 'node:stream';
import {
  NetworkingV1Api,
  Watch,
  type V1NetworkPolicy,
  type V1Service,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBus, type LabvirtEvent } from '../../src/events/index.js';
import { LABELS, evaluateNetworkPolicies } from '../../src/kube/index.js';
import { createLogger } from '../../src/log/index.js';
import { MIRROR_POLICY, NodePortSync, readEnvPorts, SYNC_LABELS } from '../../src/sync/index.js';
import {
  greet,
  mirrorServices,
  startSimHost,
  type SimHost,
  type StudentEnv,
} from '../helpers/student-envs.js';

const MAX_PORTS = 3;

describe('NodePort sync against the simulator', { timeout: 90_000 }, () => {
  let h: SimHost;
  let net: NetworkingV1Api;
  const events: LabvirtEvent[] = [];
  const logLines: { msg: string; envId?: string }[] = [];
  const bus = new EventBus();
  bus.onAny((e) => void events.push(e));
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean))
          logLines.push(JSON.parse(line) as { msg: string; envId?: string });
        done();
      },
    }),
  });
  const syncs: NodePortSync[] = [];
  const startSync = () => {
    const sync = new NodePortSync({
      config: h.config,
      cluster: h.host,
      executor: h.executor,
      events: bus,
      logger,
    });
    sync.start();
    syncs.push(sync);
    return sync;
  };

  beforeAll(async () => {
    h = await startSimHost({
      sync: {
        maxPortsPerEnv: MAX_PORTS,
        protocols: ['TCP', 'UDP'],
        retryInitialSeconds: 0.05,
        retryMaxSeconds: 0.4,
        resyncSeconds: 30,
      },
    });
    net = h.host.kubeConfig.makeApiClient(NetworkingV1Api);
  }, 60_000);
  afterAll(async () => {
    for (const s of syncs) await s.stop();
    await h?.close();
  });

  const mirrors = (env: StudentEnv) => mirrorServices(h.host.core, env.namespace);
  const policy = async (env: StudentEnv): Promise<V1NetworkPolicy | undefined> =>
    net
      .readNamespacedNetworkPolicy({ namespace: env.namespace, name: MIRROR_POLICY })
      .catch(() => undefined);
  const policyPorts = async (env: StudentEnv) =>
    ((await policy(env))?.spec?.ingress?.[0]?.ports ?? [])
      .map((p) => `${p.protocol}/${p.port}`)
      .sort();
  /** Waits until the env's mirrors are `[name, targetPort]` exactly. */
  const untilMirrors = (env: StudentEnv, want: [string, number][], what: string) =>
    h.until(async () => {
      const got = (await mirrors(env)).map((s) => [
        s.metadata!.name!,
        Number(s.spec!.ports![0]!.targetPort),
      ]);
      return JSON.stringify(got) === JSON.stringify(want) && got;
    }, what);
  const nodePortService = (
    name: string,
    ports: { port: number; nodePort?: number; protocol?: string }[],
    type = 'NodePort',
  ): V1Service => ({
    metadata: { name },
    spec: {
      type,
      selector: { app: name },
      ports: ports.map((p) => ({ ...p, targetPort: 8080 as never })),
    },
  });
  const active = async (envId: string) => {
    const env = await h.startEnv(envId);
    await h.setState(env, 'active');
    await env.student.createNamespace({ body: { metadata: { name: 'shop' } } });
    return env;
  };

  let a: StudentEnv;
  let webPort: number;

  it('mirrors a student NodePort Service and traffic flows from the reported address into the guest', async () => {
    a = await active('syncaaa1');
    startSync();
    const svc = await a.student.createNamespacedService({
      namespace: 'shop',
      body: nodePortService('web', [{ port: 80 }]),
    });
    webPort = svc.spec!.ports![0]!.nodePort!;
    // What kube-proxy in the student's cluster would do: the node port answers on the VM.
    await a.listen(a.controlPlane, webPort, 'web in syncaaa1');
    await untilMirrors(a, [['web-x-shop-x-80', webPort]], 'mirror of shop/web:80');
    await h.until(async () => (await policyPorts(a)).length === 1, 'policy');
    const [mirror] = await mirrors(a);
    expect(mirror!.spec!.type).toBe('NodePort');
    expect(mirror!.spec!.selector).toEqual({ [LABELS.env]: 'syncaaa1' });
    expect(mirror!.metadata!.labels).toMatchObject({
      [SYNC_LABELS.studentNamespace]: 'shop',
      [SYNC_LABELS.studentService]: 'web',
      [SYNC_LABELS.studentPort]: '80',
    });
    expect(await policyPorts(a)).toEqual([`TCP/${webPort}`]);

    const ns = await h.host.getNamespace(a.namespace);
    const ports = await readEnvPorts(h.host, h.config, ns!);
    expect(ports.published).toHaveLength(1);
    const published = ports.published[0]!;
    expect(published).toMatchObject({ service: 'shop/web', port: 80, studentNodePort: webPort });
    expect(published.address).toBe(`${h.sim.nodeAddresses[0]}:${published.hostNodePort}`);
    const [host, port] = published.address.split(':');
    expect(await greet(host!, Number(port))).toBe('hello from web in syncaaa1');
    const event = events
      .filter((e) => e.type === 'sync.published' && e.envId === 'syncaaa1')
      .at(-1);
    expect(event).toMatchObject({ sessionId: 's-syncaaa1', ports: [{ service: 'shop/web' }] });
  });

  it('follows changes: a port added, a node port changed, the type turned to ClusterIP, a LoadBalancer, a deletion', async () => {
    const cur = await a.student.readNamespacedService({ namespace: 'shop', name: 'web' });
    cur.spec!.ports = [
      { port: 80, nodePort: 31500, targetPort: 8080 as never, name: 'http' },
      { port: 443, targetPort: 8443 as never, name: 'https' },
    ];
    const changed = await a.student.replaceNamespacedService({
      namespace: 'shop',
      name: 'web',
      body: cur,
    });
    const httpsPort = changed.spec!.ports![1]!.nodePort!;
    await untilMirrors(
      a,
      [
        ['web-x-shop-x-443', httpsPort],
        ['web-x-shop-x-80', 31500],
      ],
      'two mirrors after the change',
    );
    const wanted = [`TCP/${httpsPort}`, 'TCP/31500'].sort();
    await h.until(
      async () => JSON.stringify(await policyPorts(a)) === JSON.stringify(wanted),
      'policy opens both target ports',
    );

    changed.spec!.type = 'ClusterIP';
    await a.student.replaceNamespacedService({ namespace: 'shop', name: 'web', body: changed });
    await untilMirrors(a, [], 'no mirrors once web is ClusterIP');
    await h.until(async () => (await policy(a)) === undefined, 'policy removed');

    const lb = await a.student.createNamespacedService({
      namespace: 'shop',
      body: nodePortService('shop-lb', [{ port: 8080 }], 'LoadBalancer'),
    });
    await untilMirrors(
      a,
      [['shop-lb-x-shop-x-8080', lb.spec!.ports![0]!.nodePort!]],
      'LoadBalancer mirrored',
    );
    await a.student.deleteNamespacedService({ namespace: 'shop', name: 'shop-lb' });
    await untilMirrors(a, [], 'mirror gone with the Service');
    await h.until(async () => (await policy(a)) === undefined, 'policy removed again');
  });

  it('keeps another env’s student out: only the published path reaches a mirrored port (NetworkPolicies as stored on the host)', async () => {
    const svc = await a.student.createNamespacedService({
      namespace: 'shop',
      body: nodePortService('api', [{ port: 9000 }]),
    });
    const apiPort = svc.spec!.ports![0]!.nodePort!;
    await untilMirrors(a, [['api-x-shop-x-9000', apiPort]], 'api mirrored');
    const b = await active('syncbbb2');
    const pods = async (env: StudentEnv) => {
      const ns = await h.host.getNamespace(env.namespace);
      const pod = (await h.host.core.listNamespacedPod({ namespace: env.namespace })).items.find(
        (p) => p.status?.podIP,
      )!;
      return {
        namespace: env.namespace,
        namespaceLabels: ns!.metadata!.labels!,
        podLabels: pod.metadata!.labels!,
        ip: pod.status!.podIP!,
      };
    };
    const [podA, podB] = [await pods(a), await pods(b)];
    const policies = [
      ...(await net.listNamespacedNetworkPolicy({ namespace: a.namespace })).items,
      ...(await net.listNamespacedNetworkPolicy({ namespace: b.namespace })).items,
    ].map((p) => ({
      metadata: p.metadata,
      spec: {
        ...p.spec,
        // The evaluator reads manifests; client-node's model calls `from` `_from`.
        ingress: p.spec?.ingress?.map(({ _from, ...rest }) => ({ ...rest, from: _from })),
      },
    }));
    const decide = (from: typeof podA | { ip: string }, port: number) =>
      evaluateNetworkPolicies(policies, { from, to: podA, port });
    // The published path: NodePort traffic arrives from outside (or a node address).
    expect(decide({ ip: '203.0.113.9' }, apiPort).allowed).toBe(true);
    // Nothing else of A's opens to the outside...
    expect(decide({ ip: '203.0.113.9' }, apiPort + 1).allowed).toBe(false);
    expect(decide({ ip: '203.0.113.9' }, 6443).allowed).toBe(false);
    // ...and B's VMs cannot go around the published address to A's VM.
    expect(decide(podB, apiPort).allowed).toBe(false);
    expect(decide(podB, 22).allowed).toBe(false);
    // Inside A, its own VMs still talk freely.
    expect(decide(podA, apiPort + 1).allowed).toBe(true);
    await a.student.deleteNamespacedService({ namespace: 'shop', name: 'api' });
    await untilMirrors(a, [], 'api unmirrored');
    const after = (await net.listNamespacedNetworkPolicy({ namespace: a.namespace })).items;
    expect(after.map((p) => p.metadata?.name)).not.toContain(MIRROR_POLICY);
  });

  it('opens the policy before the address exists, and closes it before the address goes', async () => {
    // The session view lists a mirror once its Service exists: a student who
    // connects then must get through. And no port stays open for a mirror
    // that is going. Write order, read off the host's own watches
    // (resourceVersions are the API server's one sequence of writes).
    const env = await active('syncord1');
    const seen: { kind: string; type: string; name: string; rv: number; ports: number }[] = [];
    const watch = new Watch(h.host.kubeConfig);
    const record = (kind: string) => (type: string, obj: V1Service & V1NetworkPolicy) =>
      void seen.push({
        kind,
        type,
        name: obj.metadata?.name ?? '',
        rv: Number(obj.metadata?.resourceVersion),
        ports: obj.spec?.ingress?.[0]?.ports?.length ?? 0,
      });
    const requests = await Promise.all([
      watch.watch(
        `/api/v1/namespaces/${env.namespace}/services`,
        {},
        record('Service'),
        () => undefined,
      ),
      watch.watch(
        `/apis/networking.k8s.io/v1/namespaces/${env.namespace}/networkpolicies`,
        {},
        record('NetworkPolicy'),
        () => undefined,
      ),
    ]);
    try {
      const svc = await env.student.createNamespacedService({
        namespace: 'shop',
        body: nodePortService('web', [{ port: 80 }]),
      });
      const target = svc.spec!.ports![0]!.nodePort!;
      await untilMirrors(env, [['web-x-shop-x-80', target]], 'the mirror of shop/web:80');
      await h.until(async () => (await policyPorts(env)).length === 1, 'the policy opened');
      const mirrorAdded = seen.find((e) => e.name === 'web-x-shop-x-80' && e.type === 'ADDED');
      const opened = seen.find((e) => e.name === MIRROR_POLICY && e.ports === 1);
      expect(opened!.rv).toBeLessThan(mirrorAdded!.rv);

      await env.student.deleteNamespacedService({ namespace: 'shop', name: 'web' });
      await untilMirrors(env, [], 'the mirror gone');
      await h.until(async () => (await policy(env)) === undefined, 'the policy gone');
      const mirrorDeleted = seen.find((e) => e.name === 'web-x-shop-x-80' && e.type === 'DELETED');
      const closed = seen.find((e) => e.name === MIRROR_POLICY && e.type === 'DELETED');
      expect(closed!.rv).toBeLessThan(mirrorDeleted!.rv);
    } finally {
      for (const r of requests) r.abort();
    }
  });
});
