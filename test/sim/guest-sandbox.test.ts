import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateKeyPair,
  startGateway,
  type Gateway,
  type GatewaySession,
} from '../../src/ssh/index.js';
import type { NodeName } from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { useRedis } from '../helpers/redis.js';
import { startSimHost, type SimHost, type StudentEnv } from '../helpers/student-envs.js';
import { connectClient, run } from '../sim-guest/fixtures.js';

/**
 * A student with a shell in a sim guest (through the gateway, as from
 * Slack's instructions) attacks the machine running labvirt: everything of
 * the host stays out of reach, and the env's own nodes and API server work
 * as on real VMs.
 */
const redis = useRedis({ flushBetweenTests: false });
let simHost: SimHost;
let env: StudentEnv;
let other: StudentEnv;
let gateway: Gateway;
let secrets: string;
const studentKey = generateKeyPair();
const clients: Client[] = [];
const SESSION = 's-sandbox0001';

beforeAll(async () => {
  secrets = await mkdtemp(join(tmpdir(), 'labvirt-secrets-'));
  // What labvirt keeps on its machine: the API token, the orchestrator's and the gateway's keys.
  await writeFile(join(secrets, 'api-token'), 'lvt_secret-token\n', { mode: 0o600 });
  await writeFile(join(secrets, 'orchestrator_ed25519'), generateKeyPair().private, {
    mode: 0o600,
  });
  const gatewayKey = generateKeyPair().private;
  await writeFile(join(secrets, 'gateway_host_ed25519'), gatewayKey, { mode: 0o600 });
  simHost = await startSimHost({}, 300);
  [env, other] = await Promise.all([
    simHost.startEnv('sbxaaaaa', 'v1.30-3node'),
    simHost.startEnv('sbxbbbbb', 'v1.30-1node'),
  ]);
  const names: NodeName[] = ['control-plane', 'worker-1', 'worker-2'];
  const nodes = await simHost.until(async () => {
    const ips = await Promise.all(names.map((n) => simHost.nodeIp(env.namespace, n)));
    return ips.every(Boolean) && names.map((name, i) => ({ name, ip: ips[i]! }));
  }, 'all three nodes running');
  for (const v of nodes) {
    await simHost.executor.installStudentKey(
      { envId: env.envId, node: v.name, ip: v.ip },
      studentKey.public,
    );
  }
  const { hostKeys } = await simHost.identity(env.envId);
  const session: GatewaySession = {
    sessionId: SESSION,
    student: 'ada',
    envId: env.envId,
    expiresAt: new Date(Date.now() + 3600_000),
    publicKeys: [studentKey.public],
    nodes: nodes.map((v) => ({ node: v.name, ip: v.ip, hostKey: hostKeys[v.name] })),
    // These guests trust the env's key for the hop (no gateway key was installed).
    hopKey: 'env',
  };
  gateway = await startGateway({
    hostKey: gatewayKey,
    host: '127.0.0.1',
    port: 0,
    directory: { lookup: async (id) => (id === SESSION ? session : undefined) },
    clientKey: gatewayKey,
    identity: simHost.identity,
    resolve: simHost.sim.resolveGuest,
    idleTimeoutMs: 60_000,
    audit: silentLogger(),
  });
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.end();
  await gateway?.close();
  await simHost?.close();
  await rm(secrets, { recursive: true, force: true });
});

/** The student's shell on the control plane, through the gateway. */
async function studentShell(): Promise<Client> {
  const c = await connectClient({
    port: gateway.port,
    username: SESSION,
    privateKey: studentKey.private,
  });
  clients.push(c);
  return c;
}

describe('a sim guest is sandboxed', () => {
  it('is its own machine: hostname is the VM name, root is the guest root', async () => {
    const c = await studentShell();
    const r = await run(c, 'hostname; cat /etc/hostname; id -u; echo "$HOME"');
    expect(r.stdout).toBe('control-plane\ncontrol-plane\n0\n/home/student\n');
  });

  it("cannot read labvirt's token, keys, kubeconfig or the host's files", async () => {
    const c = await studentShell();
    const targets = [
      join(secrets, 'api-token'),
      join(secrets, 'orchestrator_ed25519'),
      join(secrets, 'gateway_host_ed25519'),
      simHost.sim.kubeconfigPath,
      '/etc/shadow',
      join(homedir(), '.ssh'),
      process.cwd(),
    ];
    for (const path of targets) {
      const r = await run(c, `cat ${JSON.stringify(path)} || ls ${JSON.stringify(path)}`);
      expect(r.code, path).not.toBe(0);
      expect(r.stdout, path).toBe('');
      expect(r.stderr, path).toMatch(/No such file or directory|Is a directory/);
    }
    // Nothing in the guest's whole filesystem holds the token (/usr is the host's, read-only).
    const grep = await run(
      c,
      'grep -rl lvt_secret-token / --exclude-dir=proc --exclude-dir=usr 2>/dev/null; echo done',
    );
    expect(grep.stdout).toBe('done\n');
    expect((await run(c, 'touch /usr/bin/planted')).code).not.toBe(0);
  });

  it("cannot see another student's guest", async () => {
    const c = await studentShell();
    const otherSandboxes = await readdir(
      join(simHost.sim.guestMapPath, '..', 'guests', other.namespace),
    );
    expect(otherSandboxes.length).toBe(1);
    const r = await run(
      c,
      `ls ${JSON.stringify(join(simHost.sim.guestMapPath, '..', 'guests', other.namespace))}; ls /home`,
    );
    expect(r.stderr).toMatch(/No such file or directory/);
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(['labvirt', 'student']);
    // Nor reach its sshd or API server by address.
    const otherIp = other.controlPlane.ip;
    const probe = await run(
      c,
      `timeout 3 bash -c 'exec 3<>/dev/tcp/${otherIp}/22' 2>&1 || echo refused`,
    );
    expect(probe.stdout).toMatch(/refused/);
  });

  it("does not see the host's processes", async () => {
    const c = await studentShell();
    const r = await run(c, 'ps -eo pid,comm --no-headers');
    const names = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[1]);
    expect(names).not.toContain('redis-server');
    expect(r.stdout).not.toMatch(/vitest|sshd/);
    // bwrap's init, the guest's helper and this shell's processes only.
    expect(names.length).toBeLessThan(8);
    const pids = r.stdout
      .trim()
      .split('\n')
      .map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(pids).not.toContain(process.pid);
  });

  it('cannot reach Redis, the host API server or any other host port', async () => {
    const c = await studentShell();
    const redisPort = new URL(redis.url).port;
    const apiPort = new URL(simHost.sim.url).port;
    for (const port of [redisPort, apiPort]) {
      const r = await run(
        c,
        `timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && echo connected' 2>&1 || echo refused`,
      );
      expect(r.stdout, `port ${port}`).toMatch(/refused/);
      expect(r.stdout).not.toMatch(/connected/);
    }
    // Redis itself is up and reachable from the host all along.
    expect(await redis.client.ping()).toBe('PONG');
  });
});

describe("a sim guest's env works as on real nodes", () => {
  it('ssh worker-1 from the control plane reaches the worker as student', async () => {
    const c = await studentShell();
    const r = await run(c, 'ssh worker-1 hostname && ssh worker-2 \'echo "$USER on $(hostname)"\'');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('worker-1\nstudent on worker-2\n');
    // The user is the caller's, whatever the remote command holds (an @ is not a destination).
    const at = await run(c, `ssh -o BatchMode=yes worker-1 'echo "a@b \${USER}"'`);
    expect(at).toMatchObject({ stdout: 'a@b student\n', stderr: '' });
    expect((await run(c, 'getent hosts worker-1')).stdout).toMatch(/worker-1/);
  });

  it("kubectl with admin.conf (and the student's own kubeconfig) reaches the student cluster", async () => {
    const c = await studentShell();
    const nodes = await simHost.until(async () => {
      const r = await run(c, 'kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o name');
      return r.code === 0 && r.stdout.split('\n').filter(Boolean).length === 3 && r.stdout;
    }, 'three nodes registered');
    expect(nodes.split('\n').filter(Boolean).sort()).toEqual([
      'node/control-plane',
      'node/worker-1',
      'node/worker-2',
    ]);
    const own = await run(c, 'kubectl get ns default -o name');
    expect(own.stdout).toBe('namespace/default\n');
    const fromWorker = await run(c, 'ssh worker-1 "sudo cat /etc/hosts"');
    // As the host's DNS names them: every node under the `nodes` Service, the
    // control plane's endpoint (admin.conf's server) among them.
    for (const node of ['control-plane', 'worker-1', 'worker-2']) {
      expect(fromWorker.stdout).toMatch(
        new RegExp(
          `^\\S+ ${node} .*\\b${node}\\.nodes\\.lab-[a-z0-9]+\\.svc\\.cluster\\.local\\b`,
          'm',
        ),
      );
    }
  });
});
