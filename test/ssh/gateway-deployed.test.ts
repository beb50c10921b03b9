import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type { Client, ClientChannel } from 'ssh2';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../../src/redis/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { generateKeyPair } from '../../src/ssh/index.js';
import { Store } from '../../src/store/index.js';
import { connectClient, newKey, readUntil, run } from '../sim-guest/fixtures.js';
import { FIXTURE_LABS, serveConfigFor } from '../helpers/stack.js';

const ROOT = join(import.meta.dirname, '..', '..');
const API_TOKEN = 'gateway-deployed-token-0123456789';
const REDIS_PREFIX = 'labvirt';

interface ServeChild {
  proc: ChildProcess;
  output: string[];
  /** Resolves with the first JSON log line whose `msg` is `msg`. */
  line(msg: string): Promise<Record<string, unknown>>;
}

/**
 * `labvirt serve` as the chart deploys it: a child process of its own. The
 * environment carries no kubeconfig at all (a pod without a token).
 */
function spawnServe(configFile: string, roles: string): ServeChild {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LABVIRT_FROM_SOURCE: '1',
    LABVIRT_API_TOKEN: API_TOKEN,
  };
  for (const name of ['KUBECONFIG', 'LABVIRT_KUBECONFIG', 'KUBERNETES_SERVICE_HOST'])
    delete env[name];
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'labvirt.js'), 'serve', '--config', configFile, '--roles', roles],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  const waiting: { msg: string; resolve: (l: Record<string, unknown>) => void }[] = [];
  let partial = '';
  const take = (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const text of lines) {
      output.push(text);
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      for (const w of waiting.filter((w) => w.msg === parsed!.msg)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(parsed);
      }
    }
  };
  proc.stdout?.on('data', take);
  proc.stderr?.on('data', take);
  return {
    proc,
    output,
    line: (msg) =>
      new Promise((resolve, reject) => {
        const found = output.map((t) => t.trim()).find((t) => t.includes(`"msg":"${msg}"`));
        if (found) return resolve(JSON.parse(found) as Record<string, unknown>);
        waiting.push({ msg, resolve });
        proc.once('exit', (code) =>
          reject(new Error(`serve --roles ${roles} exited (${code}):\n${output.join('\n')}`)),
        );
      }),
  };
}

async function until<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 120_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A shell of `node` through a jump from the gateway connection, as `ssh -J` opens it. */
async function jumpTo(front: Client, node: string, privateKey: string): Promise<Client> {
  const sock = await new Promise<ClientChannel>((resolve, reject) =>
    front.forwardOut('127.0.0.1', 0, node, 22, (err, s) => (err ? reject(err) : resolve(s))),
  );
  return connectClient({ sock, username: 'student', privateKey });
}

/**
 * The SSH gateway deployed as the chart does: `serve --roles gateway` in a
 * process of its own with no cluster access (Redis and the guests only),
 * beside a `serve` running every other role on the same Redis and cluster.
 */
describe('the SSH gateway as its own process, without cluster access', () => {
  let dir: string;
  let redis: RedisServerHandle;
  let sim: SimHandle;
  let orchestrator: ServeChild;
  let gatewayChild: ServeChild;
  let apiUrl: string;
  let gatewayPort: number;
  let store: Store;
  let storeRedis: Redis;
  const student = newKey();
  let sessionId: string;
  let envId: string;
  const clients: Client[] = [];

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const login = async () => {
    const c = await connectClient({
      port: gatewayPort,
      username: sessionId,
      privateKey: student.private,
    });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-gw-deployed-'));
    redis = await startRedisServer();
    sim = await startSim({ dir: join(dir, 'sim'), speed: 200 });
    // The gateway's client key, as the Secret both Deployments mount.
    const clientKeyFile = join(dir, 'gateway_client_key');
    writeFileSync(clientKeyFile, generateKeyPair().private, { mode: 0o600 });
    const flavors = {
      'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 0, maxTotal: 1 },
      'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 1, maxTotal: 2 },
    };
    const ssh = {
      gatewayPort: 0,
      bindAddress: '127.0.0.1',
      publicHost: '127.0.0.1',
      gatewayClientKey: clientKeyFile,
    };
    const orchestratorConfig = join(dir, 'orchestrator.yaml');
    writeFileSync(
      orchestratorConfig,
      stringify(
        serveConfigFor(sim, redis.url, {
          logLevel: 'info',
          flavors,
          pool: { pollSeconds: 0.05, jobLockSeconds: 3, provisionDeadlineSeconds: 90 },
          api: { host: '127.0.0.1', port: 0 },
          ssh: { ...ssh, hostKey: join(dir, 'hk'), orchestratorKey: join(dir, 'ok') },
          redis: { url: redis.url, prefix: REDIS_PREFIX },
        }),
      ),
    );
    // No kubeconfig: only where the guests are (the address seam) and Redis.
    const gatewayConfig = join(dir, 'gateway.yaml');
    writeFileSync(
      gatewayConfig,
      stringify({
        labsDir: FIXTURE_LABS,
        logLevel: 'info',
        flavors,
        kube: { guestAddressMap: join(dirname(sim.kubeconfigPath), 'guests.json') },
        redis: { url: redis.url, prefix: REDIS_PREFIX },
        ssh: { ...ssh, hostKey: join(dir, 'gateway_host_key') },
      }),
    );
    orchestrator = spawnServe(orchestratorConfig, 'api,workers,scheduler');
    gatewayChild = spawnServe(gatewayConfig, 'gateway');
    const [started, gatewayStarted] = await Promise.all([
      orchestrator.line('labvirt started'),
      gatewayChild.line('labvirt gateway started'),
    ]);
    apiUrl = started.apiUrl as string;
    gatewayPort = gatewayStarted.gatewayPort as number;
    storeRedis = new Redis(redis.url);
    store = new Store(storeRedis, REDIS_PREFIX);
    await until(
      async () => ((await store.countByState('v1.30-3node')).warm ?? 0) >= 1,
      'a warm 3-node env',
      150_000,
    );
  }, 240_000);

  afterAll(async () => {
    for (const c of clients) c.end();
    for (const child of [gatewayChild, orchestrator]) {
      if (!child || child.proc.exitCode !== null) continue;
      const exited = new Promise((r) => child.proc.once('exit', r));
      child.proc.kill('SIGTERM');
      await exited;
    }
    storeRedis?.disconnect();
    await sim?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('lets a student started through the API onto the control plane and, by a jump, worker-1', async () => {
    const created = await api('POST', '/v1/sessions', {
      student: 'gina',
      labId: 'fixture-three',
      publicKey: student.public,
    });
    expect(created.status).toBe(201);
    sessionId = created.body.id as string;
    const active = await until(async () => {
      const { body } = await api('GET', `/v1/sessions/${sessionId}`);
      if (body.state === 'ended') throw new Error(`session ended: ${JSON.stringify(body)}`);
      return body.state === 'active' && body;
    }, 'the session to be active');
    envId = active.envId as string;

    const c = await login();
    expect((await run(c, 'hostname')).stdout).toBe('control-plane\n');
    expect((await run(c, 'echo $USER')).stdout).toBe('student\n');
    const worker = await jumpTo(c, 'worker-1', student.private);
    clients.push(worker);
    expect((await run(worker, 'hostname')).stdout).toBe('worker-1\n');
    // OpenSSH too: the control plane, and worker-1 through the gateway as a jump.
    const keyFile = join(dir, 'id_student');
    writeFileSync(keyFile, student.private, { mode: 0o600 });
    const common = [
      ...['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'],
      ...['-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-i', keyFile],
    ];
    const ssh = (args: string[]) => promisify(execFile)('ssh', [...common, ...args]);
    expect(
      (await ssh(['-p', String(gatewayPort), `${sessionId}@127.0.0.1`, 'hostname'])).stdout,
    ).toBe('control-plane\n');
    const jump = `ProxyCommand=ssh ${common.join(' ')} -p ${gatewayPort} -W %h:%p ${sessionId}@127.0.0.1`;
    expect((await ssh(['-o', jump, 'student@worker-1', 'hostname'])).stdout).toBe('worker-1\n');
    // The web terminal bridge (in the API process) logs in with its own key,
    // whose public half the API role published in Redis for this gateway.
    const bridge = await connectClient({
      port: gatewayPort,
      username: sessionId,
      privateKey: readFileSync(join(dir, 'ok'), 'utf8'),
    });
    clients.push(bridge);
    expect((await run(bridge, 'hostname')).stdout).toBe('control-plane\n');
    // The gateway read all of this from Redis: the session carries its nodes.
    const guests = (await store.getSession(sessionId))?.guests;
    expect(Object.keys(guests ?? {}).sort()).toEqual(['control-plane', 'worker-1', 'worker-2']);
    expect(guests?.['control-plane']?.hostKey).toMatch(/^ssh-ed25519 /);
  }, 180_000);

  it('refuses a session activated before its nodes were recorded, with a word to ask an operator', async () => {
    expect(sessionId).toBeDefined();
    // Right after the first login: no change in the env meanwhile, which
    // would have the orchestrator record the nodes again (restarts.ts).
    const key = store.keys.session(sessionId);
    const saved = await storeRedis.hgetall(key);
    const fields = Object.keys(saved).filter((f) => f.startsWith('guest:'));
    // What a session activated by an older labvirt looks like: no nodes in Redis.
    await storeRedis.hdel(key, ...fields);
    await storeRedis.publish(`${REDIS_PREFIX}:sessions-changed`, sessionId);
    try {
      await until(async () => {
        const refused = await login().then(
          (c) => (c.end(), false),
          () => true,
        );
        return (
          refused &&
          gatewayChild.output.some(
            (l) =>
              l.includes('"audit":"ssh.auth.refused"') &&
              l.includes('started before this SSH gateway') &&
              l.includes('ask an operator'),
          )
        );
      }, 'the refusal');
    } finally {
      await storeRedis.hset(key, Object.fromEntries(fields.map((f) => [f, saved[f]!])));
      await storeRedis.publish(`${REDIS_PREFIX}:sessions-changed`, sessionId);
    }
  }, 60_000);

  it('reaches a restarted control plane at its new address', async () => {
    expect(sessionId).toBeDefined();
    const before = (await store.getSession(sessionId))!.guests!['control-plane']!.ip;
    sim.faults.restartVm(`lab-${envId}`, 'control-plane');
    const after = await until(async () => {
      const ip = (await store.getSession(sessionId))?.guests?.['control-plane']?.ip;
      return ip !== before && ip;
    }, 'the new address recorded with the session');
    expect(after).not.toBe(before);
    // Told through Redis: the gateway process looks the session up again at once.
    const c = await until(() => login().catch(() => undefined), 'a login through the gateway');
    expect((await run(c, 'hostname')).stdout).toBe('control-plane\n');
  }, 180_000);

  it('cuts the student off when the session is stopped', async () => {
    expect(sessionId).toBeDefined();
    const c = await login();
    const shell = await new Promise<ClientChannel>((resolve, reject) =>
      c.shell({ term: 'xterm', rows: 24, cols: 80 }, (err, s) => (err ? reject(err) : resolve(s))),
    );
    let told = '';
    shell.stderr.on('data', (d: Buffer) => (told += d.toString()));
    // The shell runs on the control plane before the session ends.
    shell.write('echo ready\n');
    await readUntil(shell, /ready\r?\n/);
    shell.resume();
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    const stopped = await api('DELETE', `/v1/sessions/${sessionId}`);
    expect(stopped.status).toBe(200);
    // The orchestrator process's change reaches the gateway process through
    // Redis. Without that notice, the gateway's cached session (60 s) would
    // keep the student in past this wait.
    await Promise.race([
      closed,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('the gateway did not hear of the end')), 45_000).unref(),
      ),
    ]);
    // Cut for the session's end (not because the env's VMs went away after it).
    const audited = await until(
      async () =>
        gatewayChild.output
          .filter((l) => l.includes('"audit":"ssh.connection.close"') && l.includes('"shell":1'))
          .map((l) => JSON.parse(l) as { reason: string })[0],
      'the audit line of the cut',
      10_000,
    );
    expect(audited.reason).toBe('session ended');
    expect(told).toContain('your lab session has ended');
    await expect(login()).rejects.toThrow(/authentication/i);
  }, 60_000);
});
