import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  VersionApi,
  Watch,
} from '@kubernetes/client-node';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config/index.js';
import {
  HostCluster,
  envNamespace,
  generateEnvSecrets,
  type EnvSecrets,
  renderEnvironment,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { generateCa, issueCertificate } from '../../src/pki/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { fileResolver } from '../../src/ssh/index.js';

const { Client } = ssh2;

interface AdminConf {
  clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
  users: { user: { 'client-certificate-data': string; 'client-key-data': string } }[];
}

/**
 * The student cluster inside an env: its control plane's port 6443 answers
 * the Kubernetes API (the sim's own, one per env), reached the way labvirt
 * reaches it on a real VM, over SSH port forwarding, and authenticated by the
 * admin.conf that kubeadm leaves on the control plane.
 */
describe('simulated guests: the student cluster on the control plane’s 6443', () => {
  let sim: SimHandle;
  let dir: string;
  let host: HostCluster;
  let custom: CustomObjectsApi;
  let envSecrets: EnvSecrets;
  const config = loadConfig({ env: {}, overrides: {} });
  const envId = 'inner001';
  const ns = envNamespace(config, envId);
  const closers: (() => void | Promise<void>)[] = [];

  const until = async <T>(fn: () => Promise<T | undefined>, what: string): Promise<T> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const v = await fn().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const vmiIp = (name: string, namespace = ns) =>
    until(async () => {
      const vmi = (await custom.getNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace,
        plural: 'virtualmachineinstances',
        name,
      })) as { status?: { phase?: string; interfaces?: { ipAddress?: string }[] } };
      return vmi.status?.phase === 'Running' ? vmi.status.interfaces?.[0]?.ipAddress : undefined;
    }, `${name} running`);

  /** An SSH session to a guest as labvirt (the orchestrator key cloud-init installed). */
  const sshTo = async (ip: string) => {
    // sshd answers a moment after the VMI reports Running, as on a real VM.
    const to = await until(async () => sim.resolveGuest(ip, 22), `sshd on ${ip}`);
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve).once('error', reject);
      client.connect({
        host: to.host,
        port: to.port,
        username: 'labvirt',
        privateKey: envSecrets.sshKey.privateKey,
      });
    });
    closers.push(() => void client.end());
    return client;
  };

  const exec = (client: InstanceType<typeof Client>, command: string) =>
    new Promise<string>((resolve, reject) => {
      client.exec(command, (err, stream) => {
        if (err) return reject(err);
        let out = '';
        stream.on('data', (d: Buffer) => (out += d.toString()));
        stream.stderr.on('data', () => undefined);
        stream.on('close', () => resolve(out));
      });
    });

  /** A loopback port whose connections go through the SSH session to `destHost:destPort` in the guest. */
  const tunnel = async (
    client: InstanceType<typeof Client>,
    destHost: string,
    destPort: number,
  ) => {
    const sockets = new Set<Socket>();
    const server: Server = createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      client.forwardOut('127.0.0.1', 0, destHost, destPort, (err, channel) => {
        if (err) return sock.destroy();
        sock.pipe(channel).pipe(sock);
        channel.on('close', () => sock.destroy());
        sock.on('error', () => channel.close());
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    return (server.address() as { port: number }).port;
  };

  /** client-node on the student cluster, with admin.conf's credentials, through a tunnel. */
  const studentKubeConfig = (
    adminConfYaml: string,
    port: number,
    user?: { cert: string; key: string },
  ) => {
    const conf = parseYaml(adminConfYaml) as AdminConf;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'student',
          server: `https://127.0.0.1:${port}`,
          caData: conf.clusters[0]!.cluster['certificate-authority-data'],
          // The tunnel is not a name in the certificate; kubeadm's `kubernetes` is.
          tlsServerName: 'kubernetes',
        },
      ],
      users: [
        user
          ? {
              name: 'u',
              certData: Buffer.from(user.cert).toString('base64'),
              keyData: Buffer.from(user.key).toString('base64'),
            }
          : {
              name: 'u',
              certData: conf.users[0]!.user['client-certificate-data'],
              keyData: conf.users[0]!.user['client-key-data'],
            },
      ],
      contexts: [{ name: 'c', cluster: 'student', user: 'u' }],
      currentContext: 'c',
    });
    return kc;
  };

  let cpIp: string;
  let adminConf: string;
  let studentPort: number;
  let student: CoreV1Api;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-inner-'));
    sim = await startSim({ dir, speed: 300, namespaceDeleteDelayMs: 100, quotaStatusDelayMs: 50 });
    const kc = new KubeConfig();
    kc.loadFromFile(sim.kubeconfigPath);
    host = new HostCluster(kc, { logger: silentLogger(), quotaRetryMs: 50 });
    custom = kc.makeApiClient(CustomObjectsApi);
    envSecrets = await generateEnvSecrets();
    const objects = await renderEnvironment({
      config,
      flavor: 'v1.30-3node',
      envId,
      secrets: envSecrets,
    });
    await host.createAll(objects);
    cpIp = await vmiIp('control-plane');
    const cp = await sshTo(cpIp);
    adminConf = await until(async () => {
      const text = await exec(cp, 'cat /etc/kubernetes/admin.conf 2>/dev/null');
      return text.includes('client-certificate-data') ? text : undefined;
    }, 'admin.conf written by kubeadm init');
    studentPort = await tunnel(cp, '127.0.0.1', 6443);
    student = studentKubeConfig(adminConf, studentPort).makeApiClient(CoreV1Api);
  });
  afterAll(async () => {
    for (const close of closers.reverse()) await close();
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('leaves an admin.conf like kubeadm’s: the env’s CA, its endpoint, a client certificate', async () => {
    const conf = parseYaml(adminConf) as AdminConf;
    expect(conf.clusters[0]!.cluster.server).toBe(
      `https://control-plane.nodes.${ns}.svc.cluster.local:6443`,
    );
    const pki = (await host.readSecret(ns, 'cloudinit'))!;
    expect(conf.clusters[0]!.cluster['certificate-authority-data']).toBe(pki.data!['ca.crt']);
  });

  it('keeps the endpoint of an env made before the control plane’s Service was folded into `nodes`', async () => {
    // Such an env's cluster.env names a Service (`control-plane`), not the node's name under `nodes`.
    const oldNs = envNamespace(config, 'inner002');
    const objects = await renderEnvironment({
      config,
      flavor: 'v1.31-1node',
      envId: 'inner002',
      secrets: envSecrets,
    });
    const secret = objects.find((o) => o.kind === 'Secret' && o.metadata?.name === 'cloudinit') as {
      data: Record<string, string>;
    };
    const userdata = Buffer.from(secret.data.userdata!, 'base64').toString('utf8');
    expect(userdata).toContain("LABVIRT_CONTROL_PLANE_NAME='control-plane.nodes'");
    secret.data.userdata = Buffer.from(
      userdata.replace(
        "LABVIRT_CONTROL_PLANE_NAME='control-plane.nodes'",
        "LABVIRT_CONTROL_PLANE_SERVICE='control-plane'",
      ),
    ).toString('base64');
    await host.createAll(objects);
    const ip = await vmiIp('control-plane', oldNs);
    const cp = await sshTo(ip);
    const conf = await until(async () => {
      const text = await exec(cp, 'cat /etc/kubernetes/admin.conf 2>/dev/null');
      return text.includes('client-certificate-data') ? text : undefined;
    }, 'the old env’s admin.conf');
    expect((parseYaml(conf) as AdminConf).clusters[0]!.cluster.server).toBe(
      `https://control-plane.${oldNs}.svc.cluster.local:6443`,
    );
    expect(await exec(cp, 'cat /etc/hosts')).toContain(`control-plane.${oldNs}.svc.cluster.local`);
  });

  it('marks the control plane ready only once its cluster is up, however late kubeadm init is', async () => {
    // On a loaded machine the cluster's start outlasted the rest of the boot:
    // the marker came first, and a lab's setup ran before admin.conf existed.
    sim.faults.slowKubeadmInitMs = 1_500;
    try {
      const lateNs = envNamespace(config, 'inner003');
      await host.createAll(
        await renderEnvironment({
          config,
          flavor: 'v1.31-1node',
          envId: 'inner003',
          secrets: envSecrets,
        }),
      );
      const cp = await sshTo(await vmiIp('control-plane', lateNs));
      const seen = await until(async () => {
        const out = await exec(
          cp,
          'if [ -f /var/lib/labvirt/ready ]; then [ -f /etc/kubernetes/admin.conf ] && echo cluster-up || echo marker-first; fi',
        );
        return out.trim() || undefined;
      }, 'the readiness marker');
      expect(seen).toBe('cluster-up');
    } finally {
      sim.faults.slowKubeadmInitMs = 0;
    }
  });

  it('publishes the control plane’s 6443 in guests.json for labvirt in another process', async () => {
    const resolve = fileResolver(sim.guestMapPath);
    const to = await until(async () => {
      try {
        return resolve(cpIp, 6443);
      } catch {
        return undefined; // the map is written a moment after the API comes up
      }
    }, 'guests.json lists the student API');
    expect(to.host).toBe('127.0.0.1');
    expect(() => resolve(cpIp, 6444)).toThrow();
    // Straight to the API server, as from inside the env: TLS with the env's CA and admin.conf.
    const direct = studentKubeConfig(adminConf, to.port).makeApiClient(CoreV1Api);
    expect((await direct.listNamespace()).items.length).toBeGreaterThan(0);
  });

  it('serves a Kubernetes API of the flavor’s version, without KubeVirt in it', async () => {
    const version = await studentKubeConfig(adminConf, studentPort)
      .makeApiClient(VersionApi)
      .getCode();
    expect(version.minor).toBe('30');
    const namespaces = (await student.listNamespace()).items.map((n) => n.metadata?.name);
    expect(namespaces).toEqual(expect.arrayContaining(['default', 'kube-system', 'kube-public']));
    const kubernetes = await student.readNamespacedService({
      namespace: 'default',
      name: 'kubernetes',
    });
    expect(kubernetes.spec?.clusterIP).toBe('10.95.0.1');
    const groups = await studentKubeConfig(adminConf, studentPort)
      .makeApiClient(CustomObjectsApi)
      .listClusterCustomObject({ group: 'kubevirt.io', version: 'v1', plural: 'virtualmachines' })
      .then(
        () => 200,
        (err: unknown) => (err instanceof ApiException ? err.code : -1),
      );
    expect(groups).toBe(404);
  });

  it('lists the env’s nodes as they join, Ready, with their VM IPs', async () => {
    const workerIps = await Promise.all([vmiIp('worker-1'), vmiIp('worker-2')]);
    const nodes = await until(async () => {
      const items = (await student.listNode()).items;
      const ready = items.filter((n) =>
        n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      return ready.length === 3 ? items : undefined;
    }, 'three Ready nodes');
    const byName = Object.fromEntries(
      nodes.map((n) => [
        n.metadata!.name!,
        n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address,
      ]),
    );
    expect(byName).toEqual({
      'control-plane': cpIp,
      'worker-1': workerIps[0],
      'worker-2': workerIps[1],
    });
    const cp = nodes.find((n) => n.metadata?.name === 'control-plane')!;
    expect(cp.spec?.taints?.map((t) => t.key)).toContain('node-role.kubernetes.io/control-plane');
    expect(cp.status?.nodeInfo?.kubeletVersion).toMatch(/^v1\.30\./);
  });

  it('reports each node Ready as its kubelet and containerd in the guest say, as the real control plane sees them', async () => {
    const worker = await sshTo(await vmiIp('worker-1'));
    const readyOf = async (name: string) =>
      (await student.readNode({ name })).status?.conditions?.find((c) => c.type === 'Ready');
    const becomes = (status: string) =>
      until(async () => {
        const ready = await readyOf('worker-1');
        return ready?.status === status ? ready : undefined;
      }, `worker-1 Ready=${status}`);
    await becomes('True');

    // The kubelet stopped: no status posted, the node controller says Unknown.
    await exec(
      worker,
      'mkdir -p /run/sim && printf "enabled=no\\nactive=no\\n" >/run/sim/kubelet.state',
    );
    expect(await becomes('Unknown')).toMatchObject({
      reason: 'NodeStatusUnknown',
      message: 'Kubelet stopped posting node status.',
    });
    // The kubelet runs, but containerd listens on another socket: NotReady, saying why.
    await exec(
      worker,
      'printf "enabled=yes\\nactive=yes\\n" >/run/sim/kubelet.state && mkdir -p /etc/containerd && ' +
        `printf '[grpc]\\n  address = "/run/containerd/containerd-v2.sock"\\n' >/etc/containerd/config.toml`,
    );
    expect(await becomes('False')).toMatchObject({
      reason: 'KubeletNotReady',
      message: expect.stringContaining('container runtime is down'),
    });
    // A symlink at the kubelet's endpoint reaches containerd (until the next reboot).
    await exec(
      worker,
      'mkdir -p /run/containerd && ln -sfn /run/containerd/containerd-v2.sock /run/containerd/containerd.sock',
    );
    await becomes('True');
    await exec(worker, 'rm /run/containerd/containerd.sock');
    await becomes('False');
    await exec(
      worker,
      "sed -i 's#containerd-v2.sock#containerd.sock#' /etc/containerd/config.toml",
    );
    await becomes('True');
    expect((await readyOf('worker-2'))?.status).toBe('True');
    expect((await readyOf('control-plane'))?.status).toBe('True');
  });

  it('allocates NodePorts for the student’s Services and streams their changes to a watcher', async () => {
    await student.createNamespace({ body: { metadata: { name: 'shop' } } });
    const events: string[] = [];
    const watch = await new Watch(studentKubeConfig(adminConf, studentPort)).watch(
      '/api/v1/services',
      {},
      (type, obj: { metadata?: { name?: string } }) => events.push(`${type} ${obj.metadata?.name}`),
      () => undefined,
    );
    closers.push(() => watch.abort());
    const svc = await student.createNamespacedService({
      namespace: 'shop',
      body: {
        metadata: { name: 'web' },
        spec: {
          type: 'NodePort',
          selector: { app: 'web' },
          ports: [{ port: 80, targetPort: 8080 }],
        },
      },
    });
    const nodePort = svc.spec!.ports![0]!.nodePort!;
    expect(nodePort).toBeGreaterThanOrEqual(30000);
    expect(nodePort).toBeLessThanOrEqual(32767);
    expect(svc.spec?.clusterIP).toMatch(/^10\.95\./);
    const all = await student.listServiceForAllNamespaces({ labelSelector: undefined });
    expect(all.items.map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`)).toEqual(
      expect.arrayContaining(['default/kubernetes', 'shop/web']),
    );
    await student.deleteNamespacedService({ namespace: 'shop', name: 'web' });
    await until(async () => (events.includes('DELETED web') ? true : undefined), 'DELETED event');
    expect(events).toContain('ADDED web');
  });

  it('is reachable from a worker at the control plane’s IP (how kubelets and kubectl on a node reach it)', async () => {
    const worker = await sshTo(await vmiIp('worker-1'));
    const port = await tunnel(worker, cpIp, 6443);
    const viaWorker = studentKubeConfig(adminConf, port).makeApiClient(CoreV1Api);
    const names = (await viaWorker.listNamespace()).items.map((n) => n.metadata?.name);
    expect(names).toContain('kube-system');
  });

  it('refuses anonymous clients (403) and certificates of another CA (401)', async () => {
    const foreignCa = await generateCa({ commonName: 'not-this-cluster', algorithm: 'ecdsa' });
    const foreign = await issueCertificate(foreignCa, { commonName: 'mallory', usage: 'client' });
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 200,
        (err: unknown) => (err instanceof ApiException ? err.code : -1),
      );
    const mallory = studentKubeConfig(adminConf, studentPort, {
      cert: foreign.certPem,
      key: foreign.keyPem,
    });
    expect(await code(mallory.makeApiClient(CoreV1Api).listNamespace())).toBe(401);

    const anon = new KubeConfig();
    const conf = parseYaml(adminConf) as AdminConf;
    anon.loadFromOptions({
      clusters: [
        {
          name: 's',
          server: `https://127.0.0.1:${studentPort}`,
          caData: conf.clusters[0]!.cluster['certificate-authority-data'],
          tlsServerName: 'kubernetes',
        },
      ],
      users: [{ name: 'anonymous' }],
      contexts: [{ name: 'c', cluster: 's', user: 'anonymous' }],
      currentContext: 'c',
    });
    expect(await code(anon.makeApiClient(CoreV1Api).listNamespace())).toBe(403);
    expect((await anon.makeApiClient(VersionApi).getCode()).major).toBe('1');
  });

  it('starts afresh when the control plane VM restarts (its containerDisk is ephemeral)', async () => {
    await student.createNamespace({ body: { metadata: { name: 'before-restart' } } });
    // Deleting the VMI is a hard restart: KubeVirt's VM controller makes a new one.
    await custom.deleteNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: ns,
      plural: 'virtualmachineinstances',
      name: 'control-plane',
    });
    const newIp = await until(async () => {
      const ip = await vmiIp('control-plane');
      return ip !== cpIp ? ip : undefined;
    }, 'control plane back with a new IP');
    const cp = await sshTo(newIp);
    const conf = await until(async () => {
      const text = await exec(cp, 'cat /etc/kubernetes/admin.conf 2>/dev/null');
      return text.includes('client-certificate-data') ? text : undefined;
    }, 'admin.conf after restart');
    const fresh = studentKubeConfig(conf, await tunnel(cp, '127.0.0.1', 6443)).makeApiClient(
      CoreV1Api,
    );
    const names = (await fresh.listNamespace()).items.map((n) => n.metadata?.name);
    expect(names).toContain('default');
    expect(names).not.toContain('before-restart');
    // The workers' kubelets register again with the new API server.
    await until(
      async () => ((await fresh.listNode()).items.length === 3 ? true : undefined),
      'nodes re-registered',
    );
  });
});
