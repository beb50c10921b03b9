import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envNamespace } from '../../src/kube/index.js';
import { envNodes, nodesOfFlavor } from '../../src/pool/nodes.js';
import type { GuestTarget } from '../../src/ssh/executor.js';
import { FIXTURE_LABS } from '../helpers/paths.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

/** The authorized_keys line labvirt writes for the session's key. */
function studentKeyLine(privateKey: string): string {
  const key = ssh2.utils.parseKey(privateKey);
  if (key instanceof Error) throw key;
  return `${key.type} ${key.getPublicSSH().toString('base64')} labvirt-student`;
}

/**
 * A claim's SSH work (issue #12, labvirt's CPU per claim): one connection
 * per node, the student's key on each, and the next command on the env —
 * the NodePort sync's watch right after activation, a check — reuses it
 * while it is open instead of connecting again (a handshake is about 5 ms
 * of labvirt's CPU, bench/ssh-cost.bench.ts).
 */
describe('SSH connections of a claim', () => {
  let stack: TestStack;
  let dir: string;

  /** Every node of an env, as labvirt reaches it. */
  const targets = async (envId: string): Promise<GuestTarget[]> => {
    const { context } = stack.labvirt;
    const nodes = await envNodes(
      context.cluster,
      envNamespace(context.config, envId),
      nodesOfFlavor(context.config, 'v1.30-3node'),
    );
    return nodes.map((n) => ({ envId, node: n.node, ip: n.ip }));
  };

  /** The student's authorized_keys on each node, read as root. */
  const authorizedKeys = async (envId: string) => {
    const { executor } = stack.labvirt.context;
    const out: Record<string, string> = {};
    for (const target of await targets(envId)) {
      const r = await executor.exec(
        target,
        'cat "${LABVIRT_GUEST_ROOT:-}/home/student/.ssh/authorized_keys"',
        { timeoutMs: 20_000 },
      );
      out[target.node] = r.stdout;
    }
    return out;
  };

  /** OpenSSH through the gateway as a jump host to one of the env's nodes, as docs/ssh.md says. */
  const jump = (sessionId: string, keyFile: string, node: string, command: string) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      const opts = [
        ...['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'],
        ...['-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-i', keyFile],
      ];
      const gateway = `ssh ${opts.join(' ')} -p ${stack.labvirt.gatewayPort} -W %h:%p ${sessionId}@127.0.0.1`;
      execFile(
        'ssh',
        [...opts, '-o', `ProxyCommand=${gateway}`, `student@${node}`, command],
        { timeout: 60_000 },
        (err, stdout, stderr) =>
          resolve({
            code: err ? Number((err as { code?: number }).code ?? 255) : 0,
            out: stdout + stderr,
          }),
      );
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'labvirt-claim-conn-'));
    // fixture-three's setup runs on worker-1; a copy of it runs on the control plane only.
    const labs = join(dir, 'labs');
    await cp(FIXTURE_LABS, labs, { recursive: true });
    await cp(join(labs, 'fixture-three'), join(labs, 'fixture-cp'), { recursive: true });
    const lab = join(labs, 'fixture-cp', 'lab.yaml');
    await writeFile(
      lab,
      (await readFile(lab, 'utf8'))
        .replace('id: fixture-three', 'id: fixture-cp')
        .replaceAll('node: worker-1', 'node: control-plane'),
    );
    stack = await startTestStack({
      overrides: {
        labsDir: labs,
        flavors: { 'v1.30-1node': { minWarm: 0 }, 'v1.30-3node': { minWarm: 2, maxTotal: 2 } },
      },
    });
    await stack.fillPool('v1.30-3node', 2, { timeoutMs: 150_000 });
  }, 180_000);
  afterAll(async () => {
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('connects once to each node, puts the key on each, and reuses the connection after activation', async () => {
    const { service, context } = stack.labvirt;
    const { executor } = context;
    // A warm env holds no connection.
    await stack.until(async () => executor.openConnections === 0, 'warm env without connections');
    const before = executor.handshakes;

    const started = await service.start({ student: 'conn-student', labId: 'fixture-three' });
    const active = await stack.untilSession(started.id, 'active', 60_000);
    const envId = active.envId!;
    expect(executor.handshakes - before).toBe(3);

    // A command on the control plane right after activation, as the sync's
    // watch or a check sends one: no new handshake.
    const controlPlane = (await targets(envId)).find((t) => t.node === 'control-plane')!;
    const result = await executor.exec(controlPlane, 'echo reused', { timeoutMs: 10_000 });
    expect(result.stdout.trim()).toBe('reused');
    expect(executor.handshakes - before).toBe(3);

    // Every node has the student's key all the same, once.
    const keys = await authorizedKeys(envId);
    const studentLine = studentKeyLine(started.privateKey!);
    for (const node of ['control-plane', 'worker-1', 'worker-2']) {
      expect(
        keys[node]!.split('\n').filter((l) => l === studentLine),
        node,
      ).toHaveLength(1);
      expect(keys[node], node).toMatch(/ labvirt-env$/m);
    }
  }, 90_000);

  it('a lab on the control plane alone: the student jumps to each worker with their own key', async () => {
    const { service } = stack.labvirt;
    const started = await service.start({ student: 'jumper', labId: 'fixture-cp' });
    const active = await stack.untilSession(started.id, 'active', 60_000);

    const keyFile = join(dir, 'id_jumper');
    await writeFile(keyFile, started.privateKey!, { mode: 0o600 });
    for (const node of ['worker-1', 'worker-2']) {
      const r = await jump(active.id, keyFile, node, 'echo "$USER on $(hostname)"');
      expect(r, node).toEqual({ code: 0, out: `student on ${node}\n` });
    }
  }, 120_000);
});
