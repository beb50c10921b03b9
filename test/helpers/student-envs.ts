import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, type V1Service } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { loadConfig, type Config } from '../../src/config/index.js';
import {
  ANNOTATIONS,
  EnvIdentities,
  HostCluster,
  LABELS,
  envNamespace,
  generateEnvSecrets,
  renderEnvironment,
  type EnvSecrets,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { envNodes } from '../../src/pool/nodes.js';
import type { SessionView } from '../../src/sessions/types.js';
import { SYNC_LABELS } from '../../src/sync/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import {
  createExecutor,
  type EnvIdentitySource,
  type Executor,
  type GuestTarget,
} from '../../src/ssh/index.js';
import type { TestStack } from './stack.js';

/** The host Services the NodePort sync made in an env namespace, sorted by name. */
export async function mirrorServices(core: CoreV1Api, namespace: string): Promise<V1Service[]> {
  const list = await core.listNamespacedService({
    namespace,
    labelSelector: `${SYNC_LABELS.component}=mirror`,
  });
  return list.items.sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!));
}

/**
 * A simulated host with envs whose student clusters are up, reached the way
 * labvirt reaches them: client-node over an SSH forward to the control
 * plane's 6443, with kubeadm's admin.conf (what the student uses).
 */
export interface SimHost {
  sim: SimHandle;
  config: Config;
  host: HostCluster;
  executor: Executor;
  /** Each env's SSH identity, from its PKI Secret (what the executor and the gateway use). */
  identity: EnvIdentitySource;
  /** The address of a running node: its launcher pod's IP. */
  nodeIp(namespace: string, node: string): Promise<string | undefined>;
  /** Polls until `fn` gives a value (errors count as "not yet"). */
  until<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs?: number): Promise<T>;
  /** `secrets` changes what the env's PKI Secret holds before it is rendered. */
  startEnv(
    envId: string,
    flavor?: string,
    secrets?: (made: EnvSecrets) => EnvSecrets | Promise<EnvSecrets>,
  ): Promise<StudentEnv>;
  /** Marks the env's Namespace as a session's (state label and owner annotations), as claiming does. */
  setState(env: StudentEnv, state: string): Promise<void>;
  close(): Promise<void>;
}

export interface StudentEnv {
  envId: string;
  namespace: string;
  controlPlane: GuestTarget;
  /** The student's client (admin.conf), through an SSH tunnel. */
  student: CoreV1Api;
  /**
   * Starts a TCP echo server inside a guest on `port`, greeting with `name`
   * (as an app behind the student's NodePort would run); stops at close.
   */
  listen(node: GuestTarget, port: number, name: string): Promise<void>;
}

export const SYNC_FLAVORS = {
  'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 0, maxTotal: 10 },
  'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 10 },
} as const;

export async function startSimHost(
  overrides: Record<string, unknown> = {},
  speed = 300,
): Promise<SimHost> {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-sync-'));
  const closers: (() => void | Promise<void>)[] = [];
  const sim = await startSim({ dir, speed, namespaceDeleteDelayMs: 200, quotaStatusDelayMs: 50 });
  const config = loadConfig({ env: {}, overrides: { flavors: SYNC_FLAVORS, ...overrides } });
  const kc = new KubeConfig();
  kc.loadFromFile(sim.kubeconfigPath);
  const host = new HostCluster(kc, { logger: silentLogger(), quotaRetryMs: 50 });
  const identities = new EnvIdentities(host, (envId) => envNamespace(config, envId));
  const identity: EnvIdentitySource = (envId) => identities.get(envId);
  const executor = createExecutor({
    identity,
    resolve: sim.resolveGuest,
    connectRetry: { attempts: 40, initialDelayMs: 50, maxDelayMs: 300 },
  });

  const nodeIp = async (namespace: string, node: string) => {
    const vmi = (await host.listVmis(namespace)).find((v) => v.name === node);
    if (vmi?.phase !== 'Running' || !vmi.uid) return undefined;
    return (await host.launcherAddresses(namespace)).get(vmi.uid);
  };

  const until = async <T>(
    fn: () => Promise<T | undefined | false>,
    what: string,
    timeoutMs = 20_000,
  ): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn().catch(() => undefined);
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const startEnv = async (
    envId: string,
    flavor = 'v1.30-1node',
    secrets: (made: EnvSecrets) => EnvSecrets | Promise<EnvSecrets> = (made) => made,
  ): Promise<StudentEnv> => {
    const namespace = envNamespace(config, envId);
    await host.createAll(
      await renderEnvironment({
        config,
        flavor,
        envId,
        secrets: await secrets(await generateEnvSecrets()),
      }),
    );
    const cpIp = await until(
      () => nodeIp(namespace, 'control-plane'),
      `${envId} control plane running`,
    );
    const controlPlane: GuestTarget = { envId, node: 'control-plane', ip: cpIp };
    const student = await openStudentApi(executor, controlPlane, closers);

    const listen = (node: GuestTarget, port: number, name: string) =>
      startGuestListener(executor, node, port, name, closers);
    return { envId, namespace, controlPlane, student, listen };
  };

  return {
    sim,
    config,
    host,
    executor,
    identity,
    nodeIp,
    until,
    startEnv,
    async setState(env, state) {
      await host.patchNamespaceMeta(env.namespace, {
        labels: { [LABELS.state]: state },
        annotations: {
          [ANNOTATIONS.session]: `s-${env.envId}`,
          [ANNOTATIONS.student]: `student-${env.envId}`,
        },
      });
    },
    async close() {
      for (const c of closers.reverse()) await c();
      await executor.close();
      await sim.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Connects, reads the greeting line (or how the connection ended). */
export function greet(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(port, host);
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(`timeout ${data}`);
    }, 3000);
    sock.on('data', (d) => {
      data += d.toString();
      if (data.includes('\n')) {
        clearTimeout(timer);
        sock.end();
        resolve(data.trim());
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? 'error');
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(data ? data.trim() : 'closed');
    });
  });
}

/**
 * The student's own client (kubeadm's admin.conf from the control plane) on
 * their cluster's API server, through a loopback tunnel over SSH forwarding.
 */
export async function openStudentApi(
  executor: Executor,
  controlPlane: GuestTarget,
  closers: (() => void | Promise<void>)[],
): Promise<CoreV1Api> {
  const poll = async <T>(fn: () => Promise<T | undefined | false>, what: string): Promise<T> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const v = await fn().catch(() => undefined);
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const adminConf = await poll(async () => {
    const r = await executor.exec(controlPlane, 'cat /etc/kubernetes/admin.conf 2>/dev/null', {
      timeoutMs: 10_000,
    });
    return r.stdout.includes('client-certificate-data') && r.stdout;
  }, `${controlPlane.envId} admin.conf`);
  const conf = parseYaml(adminConf) as {
    clusters: { cluster: { 'certificate-authority-data': string } }[];
    users: { user: { 'client-certificate-data': string; 'client-key-data': string } }[];
  };
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    executor.forward(controlPlane, '127.0.0.1', 6443).then(
      (channel) => {
        sock.pipe(channel).pipe(sock);
        channel.on('close', () => sock.destroy());
      },
      () => sock.destroy(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as { port: number }).port;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 's',
        server: `https://127.0.0.1:${port}`,
        caData: conf.clusters[0]!.cluster['certificate-authority-data'],
        tlsServerName: 'kubernetes',
      },
    ],
    users: [
      {
        name: 'admin',
        certData: conf.users[0]!.user['client-certificate-data'],
        keyData: conf.users[0]!.user['client-key-data'],
      },
    ],
    contexts: [{ name: 'c', cluster: 's', user: 'admin' }],
    currentContext: 'c',
  });
  const student = kc.makeApiClient(CoreV1Api);
  await poll(async () => (await student.listNamespace()).items.length > 0, 'student API');
  return student;
}

/** A TCP echo server inside a guest on `port` that greets with `name`; stopped by `closers`. */
export async function startGuestListener(
  executor: Executor,
  node: GuestTarget,
  port: number,
  name: string,
  closers: (() => void | Promise<void>)[],
): Promise<void> {
  const abort = new AbortController();
  let out = '';
  let started!: () => void;
  const ready = new Promise<void>((r) => (started = r));
  const script = `exec node -e '
const net = require("net");
net.createServer((c) => { c.write("hello from " + process.env.NAME + "\\n"); c.pipe(c); })
.listen(Number(process.env.PORT), process.env.LABVIRT_GUEST_ADDR, () => console.log("listening"));'`;
  const done = executor
    .exec(node, script, {
      env: { PORT: String(port), NAME: name },
      timeoutMs: 600_000,
      signal: abort.signal,
      onStdout: (chunk) => {
        out += chunk.toString();
        if (out.includes('listening')) started();
      },
    })
    .catch(() => undefined);
  closers.push(async () => {
    abort.abort();
    await done;
  });
  await Promise.race([
    ready,
    done.then(() => {
      throw new Error(`listener on ${node.node}:${port} exited: ${out}`);
    }),
  ]);
}

/**
 * A student's session on a whole running labvirt, once active: its env's
 * Namespace, the control plane as a guest target, and the student's own
 * cluster API opened through it.
 */
export async function activeSessionWithStudentApi(
  stack: TestStack,
  start: { student: string; labId: string },
  closers: (() => void | Promise<void>)[],
): Promise<{ session: SessionView; namespace: string; controlPlane: GuestTarget; api: CoreV1Api }> {
  const started = await stack.labvirt.service.start(start);
  const session = await stack.untilSession(started.id, 'active', 90_000);
  const { cluster, config } = stack.labvirt.context;
  const namespace = envNamespace(config, session.envId!);
  const [node] = await envNodes(cluster, namespace, ['control-plane']);
  const controlPlane = { envId: session.envId!, node: 'control-plane' as const, ip: node!.ip };
  const api = await openStudentApi(stack.labvirt.context.executor, controlPlane, closers);
  return { session, namespace, controlPlane, api };
}

/**
 * A NodePort Service `demo/web` (port 80) in the student's cluster, with a
 * listener on the control plane at its node port that greets with `name`.
 * Returns the node port.
 */
export async function exposeWeb(
  api: CoreV1Api,
  executor: Executor,
  controlPlane: GuestTarget,
  name: string,
  closers: (() => void | Promise<void>)[],
): Promise<number> {
  await api.createNamespace({ body: { metadata: { name: 'demo' } } });
  const web = await api.createNamespacedService({
    namespace: 'demo',
    body: {
      metadata: { name: 'web' },
      spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ port: 80 }] },
    },
  });
  const nodePort = web.spec!.ports![0]!.nodePort!;
  await startGuestListener(executor, controlPlane, nodePort, name, closers);
  return nodePort;
}
