import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionView } from '../../src/sessions/types.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const LABS = join(import.meta.dirname, '..', '..', 'labs');
const DROPIN = '/etc/systemd/system/kubelet.service.d/20-local-build.conf';

/**
 * A student works the shipped kubelet lab on the simulated cluster the way
 * its hints say, from outside: OpenSSH through labvirt's gateway, `ssh
 * worker-1` from the control plane, systemctl and journalctl there, kubectl
 * on the control plane; then the check grades the fix.
 */
describe('a student fixes kubelet-down-worker with the commands a real node takes', () => {
  let stack: TestStack;
  let dir: string;
  let session: SessionView;
  let keyFile: string;

  /** One command over OpenSSH through the gateway; the exit status and everything printed. */
  const ssh = (
    command: string,
    as: { session: SessionView; keyFile: string } = { session, keyFile },
  ) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        'ssh',
        [
          ...['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'],
          ...['-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-i', as.keyFile],
          ...['-p', String(stack.labvirt.gatewayPort), `${as.session.id}@127.0.0.1`, command],
        ],
        { timeout: 90_000 },
        (err, stdout, stderr) =>
          resolve({
            code: err ? Number((err as { code?: number }).code ?? 255) : 0,
            out: stdout + stderr,
          }),
      );
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'labvirt-student-fix-'));
    stack = await startTestStack({
      overrides: {
        labsDir: LABS,
        flavors: {
          'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 2, maxTotal: 3 },
          // The shipped labs name it; no env of it is needed here.
          'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 0, maxTotal: 1 },
        },
      },
    });
    await stack.fillPool('v1.30-3node', 2, { timeoutMs: 120_000 });
    const started = await stack.labvirt.service.start({
      student: 'alice',
      labId: 'kubelet-down-worker',
    });
    keyFile = join(dir, 'id_alice');
    await writeFile(keyFile, started.privateKey!, { mode: 0o600 });
    session = await stack.untilSession(started.id, 'active', 120_000);
  }, 300_000);
  afterAll(async () => {
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('follows the hints: status, journal and cat show the cause; daemon-reload and enable --now fix it; the check passes', async () => {
    const nodes = await ssh('kubectl get nodes --no-headers');
    expect(nodes.out).toMatch(/^worker-1\s+NotReady\s/m);

    const status = await ssh('ssh worker-1 systemctl status kubelet');
    expect(status.code).toBe(3);
    expect(status.out).toContain('kubelet.service; disabled;');
    expect(status.out).toContain('└─20-local-build.conf');
    const cat = await ssh('ssh worker-1 systemctl cat kubelet');
    expect(cat.out).toContain(`# ${DROPIN}`);
    expect(cat.out).toContain('ExecStart=/opt/kubelet/bin/kubelet');

    const before = await stack.labvirt.service.check(session.id);
    expect(before.passed).toBe(false);

    // The trap first: the drop-in gone, but not reloaded, so the loaded ExecStart still fails.
    const early = await ssh(
      `ssh worker-1 'sudo rm ${DROPIN} && sudo systemctl enable --now kubelet'`,
    );
    expect(early.code).toBe(0);
    expect(early.out).toContain("Run 'systemctl daemon-reload' to reload units.");
    const journal = await ssh('ssh worker-1 journalctl -u kubelet --no-pager');
    expect(journal.out).toContain(
      'Failed to locate executable /opt/kubelet/bin/kubelet: No such file or directory',
    );

    const fix = await ssh(
      "ssh worker-1 'sudo systemctl daemon-reload && sudo systemctl restart kubelet && systemctl is-active kubelet'",
    );
    expect(fix).toEqual({ code: 0, out: 'active\n' });
    const ready = await ssh('kubectl wait --for=condition=Ready node/worker-1 --timeout=60s');
    expect(ready).toEqual({ code: 0, out: 'node/worker-1 condition met\n' });

    const after = await stack.labvirt.service.check(session.id);
    expect(after).toMatchObject({ passed: true, score: 3, maxScore: 3 });
  }, 240_000);

  it('containerd-socket: the kubelet journal names the socket, crictl fails the same way, the real fix passes the check', async () => {
    const started = await stack.labvirt.service.start({
      student: 'bob',
      labId: 'containerd-socket',
    });
    const bob = {
      session: await stack.untilSession(started.id, 'active', 120_000),
      keyFile: join(dir, 'id_bob'),
    };
    await writeFile(bob.keyFile, started.privateKey!, { mode: 0o600 });
    const socketError =
      'dial unix /run/containerd/containerd.sock: connect: no such file or directory';

    // The hint's commands: what the kubelet logs, and crictl over its endpoint.
    const journal = await ssh('ssh worker-2 journalctl -u kubelet -n 50 --no-pager', bob);
    expect(journal.out).toMatch(/kubelet\[\d+\]: E\d{4} .*"Container runtime not ready"/);
    expect(journal.out).toContain(socketError);
    const crictl = await ssh('ssh worker-2 sudo crictl ps', bob);
    expect(crictl.code).toBe(1);
    expect(crictl.out).toContain(socketError);
    expect((await stack.labvirt.service.check(bob.session.id)).passed).toBe(false);

    const fix = await ssh(
      "ssh worker-2 'sudo sed -i s#containerd-v2.sock#containerd.sock# /etc/containerd/config.toml && sudo systemctl restart containerd kubelet && sudo crictl ps'",
      bob,
    );
    expect(fix.code).toBe(0);
    expect(fix.out).toMatch(/^CONTAINER\s+IMAGE/);
    const ready = await ssh('kubectl wait --for=condition=Ready node/worker-2 --timeout=60s', bob);
    expect(ready).toEqual({ code: 0, out: 'node/worker-2 condition met\n' });
    // The node's condition is gone from the journal once the runtime answers.
    await stack.until(
      async () =>
        !(await ssh('ssh worker-2 journalctl -u kubelet -n 1', bob)).out.includes(socketError),
      'the kubelet to stop logging the socket error',
    );
    expect(await stack.labvirt.service.check(bob.session.id)).toMatchObject({
      passed: true,
      score: 3,
      maxScore: 3,
    });
  }, 240_000);
});
