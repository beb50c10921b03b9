import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeletReadiness, recordKubeletCondition } from '../../src/sim/kubelet.js';
import { GuestFarm, connectClient, newKey, run, type TestGuest } from './fixtures.js';

/**
 * The sim guests' systemctl and journalctl (src/sim/guest/tools), over real
 * SSH to a sandboxed guest, as a student fixing the kubelet lab would use
 * them: the guests run no systemd, and the host's systemctl answered
 * "System has not been booted with systemd".
 */
const farm = new GuestFarm();
const key = newKey();
let guest: TestGuest;
let root: Client;
let student: Client;
const DROPIN = '/etc/systemd/system/kubelet.service.d/20-local-build.conf';

/** What the lab's setup does: a drop-in pointing at a missing binary, then disable and stop. */
const BREAK_KUBELET = [
  `mkdir -p ${DROPIN.replace(/\/[^/]+$/, '')}`,
  `printf '[Service]\\nExecStart=\\nExecStart=/opt/kubelet/bin/kubelet --v=2\\n' > ${DROPIN}`,
  'systemctl daemon-reload',
  'systemctl disable kubelet',
  'systemctl stop kubelet',
].join(' && ');

beforeAll(async () => {
  guest = await farm.start(
    { labvirt: [key.public], student: [key.public] },
    { hostname: 'worker-1' },
  );
  root = await connectClient({
    port: guest.guest.port,
    username: 'labvirt',
    privateKey: key.private,
  });
  student = await connectClient({
    port: guest.guest.port,
    username: 'student',
    privateKey: key.private,
  });
});

afterAll(async () => {
  root?.end();
  student?.end();
  await farm.stopAll();
});

const sudo = (command: string) => run(root, `sudo bash -c ${JSON.stringify(command)}`);
const stateFile = () => readFile(join(guest.sandbox, 'run/sim/kubelet.state'), 'utf8');

describe('systemctl in a sim guest', () => {
  it('runs the packaged kubelet at first, and is the sim one, not the host one', async () => {
    const r = await run(
      student,
      'command -v systemctl; command -v journalctl; systemctl is-active kubelet containerd; systemctl is-enabled kubelet',
    );
    expect(r.stdout).toBe(
      '/opt/labvirt-sim/bin/systemctl\n/opt/labvirt-sim/bin/journalctl\nactive\nactive\nenabled\n',
    );
    expect(r.code).toBe(0);
    expect(await kubeletReadiness(guest.sandbox)).toMatchObject({ status: 'True' });
  });

  it('walks the kubelet lab: a drop-in that stays loaded until daemon-reload, then a kubelet that runs again', async () => {
    expect((await sudo(BREAK_KUBELET)).code).toBe(0);
    expect(await kubeletReadiness(guest.sandbox)).toMatchObject({ status: 'Unknown' });

    // What the student sees: both drop-ins, the unit stopped and disabled (exit 3, as systemd's).
    const status = await run(student, 'systemctl status kubelet');
    expect(status.code).toBe(3);
    expect(status.stdout).toContain('● kubelet.service - kubelet: The Kubernetes Node Agent');
    expect(status.stdout).toContain('kubelet.service; disabled; vendor preset: enabled)');
    expect(status.stdout).toMatch(
      /Drop-In: \/usr\/lib\/systemd\/system\/kubelet\.service\.d\n\s+└─10-kubeadm\.conf\n\s+\/etc\/systemd\/system\/kubelet\.service\.d\n\s+└─20-local-build\.conf\n/,
    );
    expect(status.stdout).toContain('Active: inactive (dead) since');
    const cat = await run(student, 'systemctl cat kubelet');
    expect(cat.stdout).toContain(
      `# ${DROPIN}\n[Service]\nExecStart=\nExecStart=/opt/kubelet/bin/kubelet --v=2\n`,
    );
    expect(cat.stdout).toContain('# /usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf');

    // Changes need root, as over SSH without polkit.
    const refused = await run(student, 'systemctl start kubelet');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      'Failed to start kubelet.service: Interactive authentication required.',
    );

    // The drop-in removed without daemon-reload: systemd still runs the loaded ExecStart.
    const early = await run(student, `sudo rm ${DROPIN} && sudo systemctl enable --now kubelet`);
    expect(early.code).toBe(0);
    expect(early.stderr).toContain(
      "changed on disk. Run 'systemctl daemon-reload' to reload units.",
    );
    expect(early.stdout).toContain(
      'Created symlink /etc/systemd/system/multi-user.target.wants/kubelet.service → /usr/lib/systemd/system/kubelet.service.',
    );
    const failing = await run(student, 'systemctl is-active kubelet');
    expect([failing.stdout, failing.code]).toEqual(['activating\n', 3]);
    expect(await kubeletReadiness(guest.sandbox)).toMatchObject({ status: 'Unknown' });
    const journal = await run(student, 'journalctl -xeu kubelet.service --no-pager');
    expect(journal.stdout).toMatch(
      /worker-1 \(kubelet\)\[\d+\]: kubelet\.service: Failed to locate executable \/opt\/kubelet\/bin\/kubelet: No such file or directory\n/,
    );
    expect(journal.stdout).toContain(
      'systemd[1]: kubelet.service: Main process exited, code=exited, status=203/EXEC',
    );
    expect((await run(student, 'systemctl status kubelet')).stdout).toContain(
      'Active: activating (auto-restart) (Result: exit-code)',
    );

    // daemon-reload, restart: the packaged kubelet runs, enabled; the node is Ready again.
    const fixed = await run(
      student,
      'sudo systemctl daemon-reload && sudo systemctl restart kubelet',
    );
    expect([fixed.code, fixed.stderr]).toEqual([0, '']);
    const after = await run(student, 'systemctl is-active kubelet; systemctl is-enabled kubelet');
    expect([after.stdout, after.code]).toEqual(['active\nenabled\n', 0]);
    expect(await stateFile()).toMatch(/^enabled=yes\nactive=yes\n/);
    expect(await kubeletReadiness(guest.sandbox)).toMatchObject({ status: 'True' });
    const last = await run(student, 'journalctl -u kubelet -n 1 -o cat');
    expect(last.stdout).toBe('Started kubelet.service - kubelet: The Kubernetes Node Agent.\n');
  });

  it("reads a lab's own state file, and answers as systemd for units it does not have and names it refuses", async () => {
    // The labs' sim convention: a state file written by a script makes a unit.
    await writeFile(join(guest.sandbox, 'run/sim/etcd-backup.state'), 'enabled=no\nactive=yes\n');
    const lab = await run(
      student,
      'systemctl is-active etcd-backup; systemctl is-enabled etcd-backup',
    );
    expect(lab.stdout).toBe('active\ndisabled\n');
    expect(lab.code).toBe(1);

    const missing = await run(student, 'systemctl status nosuch.service');
    expect([missing.code, missing.stderr]).toEqual([
      4,
      'Unit nosuch.service could not be found.\n',
    ]);
    const start = await run(student, 'sudo systemctl start nosuch');
    expect([start.code, start.stderr]).toEqual([
      5,
      'Failed to start nosuch.service: Unit nosuch.service not found.\n',
    ]);
    // A name never reaches a path outside /run/sim.
    const bad = await run(student, "sudo systemctl start '../../etc/passwd'");
    expect([bad.code, bad.stderr]).toEqual([1, 'Invalid unit name "../../etc/passwd".\n']);
    const verb = await run(student, 'systemctl isolate rescue.target');
    expect(verb.code).toBe(1);
    expect(verb.stderr).toContain("systemctl (labvirt sim): 'isolate' is not simulated");
  });

  it('stops containerd: the node loses its runtime; a start with a missing binary fails the job (Type=notify)', async () => {
    expect((await sudo('systemctl stop containerd')).code).toBe(0);
    const down = await kubeletReadiness(guest.sandbox);
    expect(down).toMatchObject({ status: 'False', reason: 'KubeletNotReady' });

    // What the sim's heartbeat writes back; a running kubelet logs it.
    await recordKubeletCondition(guest.sandbox, down);
    const journal = await run(student, 'journalctl -u kubelet -n 1');
    expect(journal.stdout).toMatch(
      /^[A-Z][a-z]{2} \d{2} [\d:]{8} worker-1 kubelet\[\d+\]: E\d{4} [\d:.]+ +\d+ kubelet\.go:\d+\] "Container runtime not ready" err="container runtime is down, .*dial unix \/run\/containerd\/containerd\.sock: connect: no such file or directory"\n$/,
    );

    await sudo(
      "mkdir -p /etc/systemd/system/containerd.service.d && printf '[Service]\\nExecStart=\\nExecStart=/usr/local/bin/containerd\\n' > /etc/systemd/system/containerd.service.d/10-local.conf && systemctl daemon-reload",
    );
    const failed = await sudo('systemctl start containerd');
    expect(failed.code).toBe(1);
    expect(failed.stderr).toBe(
      'Job for containerd.service failed because the control process exited with error code.\n' +
        'See "systemctl status containerd.service" and "journalctl -xeu containerd.service" for details.\n',
    );
    expect((await run(student, 'systemctl is-failed containerd')).stdout).toBe('failed\n');

    await sudo(
      'rm /etc/systemd/system/containerd.service.d/10-local.conf && systemctl daemon-reload && systemctl start containerd',
    );
    expect((await run(student, 'systemctl is-active containerd')).stdout).toBe('active\n');
    const up = await kubeletReadiness(guest.sandbox);
    expect(up).toMatchObject({ status: 'True' });
    await recordKubeletCondition(guest.sandbox, up);
    expect((await run(student, 'journalctl -u kubelet -n 1 -o cat')).stdout).toBe(
      'Started kubelet.service - kubelet: The Kubernetes Node Agent.\n',
    );
  });

  it('journalctl: no entries for a quiet unit, clustered options, and refuses what it does not simulate', async () => {
    expect((await run(student, 'journalctl -u ssh')).stdout).toBe('-- No entries --\n');
    const clustered = await run(student, 'journalctl --no-pager -n2 -u containerd -o cat');
    expect(clustered.stdout).toBe(
      'Failed to start containerd.service - containerd container runtime.\n' +
        'Started containerd.service - containerd container runtime.\n',
    );
    const all = await run(student, 'journalctl -n 3 -o cat');
    expect(all.stdout.split('\n')).toHaveLength(4);
    // -f follows: what a restart logs while it waits (the restart only once
    // its tail runs, and the follower ended once the lines are there).
    const follow = await run(student, 'sudo bash -s', {
      stdin: [
        'timeout 30 journalctl -u kubelet -f -n 0 -o cat > /tmp/followed 2>&1 < /dev/null &',
        'follower=$!',
        "until grep -qsa 'tai[l]' /proc/[0-9]*/cmdline; do sleep 0.1; done",
        'sleep 0.3',
        'systemctl restart kubelet',
        "until grep -q '^Started' /tmp/followed; do sleep 0.1; done",
        'kill $follower',
        'cat /tmp/followed',
        '',
      ].join('\n'),
    });
    expect(follow.stdout).toBe(
      'Stopping kubelet.service - kubelet: The Kubernetes Node Agent...\n' +
        'kubelet.service: Deactivated successfully.\n' +
        'Stopped kubelet.service - kubelet: The Kubernetes Node Agent.\n' +
        'Started kubelet.service - kubelet: The Kubernetes Node Agent.\n',
    );
    const refused = await run(student, 'journalctl _PID=1');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('matches other than -u UNIT are not simulated');
  });
});

describe('crictl in a sim guest', () => {
  const SOCKET_ERROR =
    'FATA[0000] validate service connection: validate CRI v1 runtime API for endpoint "unix:///run/containerd/containerd.sock": ' +
    'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: ' +
    'dial unix /run/containerd/containerd.sock: connect: no such file or directory"\n';
  const crictl = (args: string) =>
    run(student, `crictl --runtime-endpoint unix:///run/containerd/containerd.sock ${args}`);

  it('answers on the socket containerd listens on, as the containerd lab checks it', async () => {
    expect((await run(student, 'command -v crictl')).stdout).toBe('/opt/labvirt-sim/bin/crictl\n');
    const version = await crictl('--timeout 5s version');
    expect([version.code, version.stdout]).toEqual([
      0,
      'Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  1.7.12\nRuntimeApiVersion:  v1\n',
    ]);
    expect((await crictl('ps')).stdout).toMatch(
      /^CONTAINER\s+IMAGE\s+CREATED\s+STATE\s+NAME\s+ATTEMPT\s+POD ID\s+POD\n$/,
    );
  });

  it('fails as crictl does when containerd listens elsewhere or is stopped; a symlink reaches it', async () => {
    await sudo(
      'mkdir -p /etc/containerd && printf \'version = 2\\n\\n[grpc]\\n  address = "/run/containerd/containerd-v2.sock"\\n\' > /etc/containerd/config.toml',
    );
    const moved = await crictl('ps');
    expect([moved.code, moved.stderr]).toEqual([1, SOCKET_ERROR]);
    expect(await kubeletReadiness(guest.sandbox)).toMatchObject({ status: 'False' });

    await sudo(
      'mkdir -p /run/containerd && ln -sfn /run/containerd/containerd-v2.sock /run/containerd/containerd.sock',
    );
    expect((await crictl('version')).code).toBe(0);
    expect(await kubeletReadiness(guest.sandbox)).toMatchObject({ status: 'True' });

    await sudo(
      "rm /run/containerd/containerd.sock && sed -i 's#containerd-v2.sock#containerd.sock#' /etc/containerd/config.toml",
    );
    expect((await crictl('version')).code).toBe(0);
    await sudo('systemctl stop containerd');
    const stopped = await crictl('version');
    expect([stopped.code, stopped.stderr]).toEqual([1, SOCKET_ERROR]);
    await sudo('systemctl start containerd');
    expect((await crictl('version')).code).toBe(0);
  });

  it('takes the endpoint from /etc/crictl.yaml, warns without one, and refuses what it does not simulate', async () => {
    const bare = await run(student, 'crictl version');
    expect(bare.code).toBe(0);
    expect(bare.stderr).toContain('WARN[0000] runtime connect using default endpoints');
    await sudo("printf 'runtime-endpoint: unix:///run/elsewhere.sock\\n' > /etc/crictl.yaml");
    const configured = await run(student, 'crictl version');
    expect(configured.code).toBe(1);
    expect(configured.stderr).toContain(
      'dial unix /run/elsewhere.sock: connect: no such file or directory',
    );
    await sudo('rm /etc/crictl.yaml');
    const exec = await run(student, 'crictl exec -it abc sh');
    expect([exec.code, exec.stderr]).toEqual([
      1,
      "crictl (labvirt sim): 'exec' is not simulated (version, info, ps, pods, images)\n",
    ]);
  });
});
