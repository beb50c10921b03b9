import { createServer, type AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';
import {
  HostKeyMismatchError,
  InvalidEnvError,
  createExecutor,
  generateKeyPair,
  type Executor,
} from '../../src/ssh/index.js';
import { GuestFarm, connectClient, newKey, run } from '../sim-guest/fixtures.js';

const farm = new GuestFarm();
const executors: Executor[] = [];
afterEach(async () => {
  for (const e of executors.splice(0)) await e.close();
  await farm.stopAll();
});

const labvirtKey = newKey();
function executor(extra: Partial<Parameters<typeof createExecutor>[0]> = {}) {
  const e = createExecutor({
    privateKey: labvirtKey.private,
    resolve: farm.resolve,
    connectRetry: { attempts: 30, initialDelayMs: 20, maxDelayMs: 100 },
    ...extra,
  });
  executors.push(e);
  return e;
}
const guest = () => farm.start({ labvirt: [labvirtKey.public], student: [] });
const target = (
  ip: string,
  envId = 'env00001',
  node: 'control-plane' | 'worker-1' = 'control-plane',
) => ({ envId, node, ip });

describe('executor', () => {
  it('runs a script, streams its output and reports the exit code', async () => {
    const g = await guest();
    const ex = executor();
    const chunks: string[] = [];
    const r = await ex.exec(target(g.ip), 'echo one\necho two >&2\necho "lab=$LAB_ID"\nexit 3\n', {
      env: { LAB_ID: 'net-101' },
      timeoutMs: 10_000,
      onStdout: (c) => chunks.push(c.toString()),
    });
    expect(r).toMatchObject({
      exitCode: 3,
      stdout: 'one\nlab=net-101\n',
      stderr: 'two\n',
      timedOut: false,
    });
    expect(chunks.join('')).toBe('one\nlab=net-101\n');
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('keeps student input inert: values are data, bad names are refused', async () => {
    const g = await guest();
    const ex = executor();
    const marker = join(g.sandbox, 'pwned');
    const evil = [
      `$(touch ${marker})`,
      `\`touch ${marker}\``,
      `x; touch ${marker}`,
      `x\ntouch ${marker}\n`,
      `'; touch ${marker}; echo '`,
      `"; touch ${marker}; echo "`,
      `\\'$(touch ${marker})`,
    ];
    const env = Object.fromEntries(evil.map((v, i) => [`V${i}`, v]));
    const r = await ex.exec(
      target(g.ip),
      'for i in 0 1 2 3 4 5 6; do eval "printf \'%s\\0\' \\"\\$V$i\\""; done\n',
      {
        env,
        timeoutMs: 10_000,
      },
    );
    expect(r.exitCode).toBe(0);
    expect(r.stdout.split('\0').slice(0, -1)).toEqual(evil);
    for (const name of ['A;B', "A'B", 'A B', 'a', '1A', 'A\nB', '$(touch x)', 'A=B']) {
      await expect(
        ex.exec(target(g.ip), 'true', { env: { [name]: 'v' }, timeoutMs: 5000 }),
      ).rejects.toThrow(InvalidEnvError);
    }
    await expect(
      ex.exec(target(g.ip), 'true', { runAs: `root; touch ${marker}`, timeoutMs: 5000 }),
    ).rejects.toThrow(InvalidEnvError);
    expect(existsSync(marker)).toBe(false);
  });

  it('runs as another user through sudo, still with the env', async () => {
    const g = await guest();
    const ex = executor();
    const r = await ex.exec(target(g.ip), 'echo "$USER $HOME $X"', {
      runAs: 'student',
      env: { X: 'it works' },
      timeoutMs: 10_000,
    });
    // The guest is sandboxed: its home directories are at their real paths.
    expect(r.stdout).toBe('student /home/student it works\n');
  });

  it("opens a script's files to the user it runs as, and to nobody when it runs as the login user or root", async () => {
    const g = await guest();
    const ex = executor();
    // $0 is the script's path in the bundle's directory, beside its env file.
    const modes = 'd=$(dirname "$0"); stat -c %a "$d" "$d/env" "$0"';
    const opts = { env: { X: 'y' }, timeoutMs: 10_000 };
    const asOther = await ex.exec(target(g.ip), modes, { ...opts, runAs: 'student' });
    const asSelf = await ex.exec(target(g.ip), modes, opts);
    const asSelfByName = await ex.exec(target(g.ip), modes, { ...opts, runAs: 'labvirt' });
    const asRoot = await ex.exec(target(g.ip), modes, { ...opts, runAs: 'root' });
    // Through sudo: the directory searchable (not listable), the files readable.
    expect(asOther.stdout.split('\n').slice(0, 3)).toEqual(['711', '644', '644']);
    expect(asSelf.stdout.split('\n').slice(0, 3)).toEqual(['700', '600', '600']);
    expect(asSelfByName.stdout).toBe(asSelf.stdout);
    // Root reads them as they are: a check or setup script stays private to
    // it, even from a student logged in while it runs.
    expect(asRoot.stdout).toBe(asSelf.stdout);
  });

  it('kills a script that runs past its timeout', async () => {
    const g = await guest();
    const ex = executor();
    const r = await ex.exec(
      target(g.ip),
      'sleep 30 &\necho $! > "$HOME/pid"\necho started\nwait\necho never\n',
      { timeoutMs: 500 },
    );
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBeNull();
    expect(r.stdout).toBe('started\n');
    // The pid is the guest's (its own PID namespace): ask the guest.
    const alive = async () =>
      (
        await ex.exec(
          target(g.ip),
          'kill -0 "$(cat "$HOME/pid")" 2>/dev/null && echo alive || echo gone',
          {
            timeoutMs: 10_000,
          },
        )
      ).stdout.trim();
    const deadline = Date.now() + 10_000;
    while ((await alive()) === 'alive' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(await alive()).toBe('gone');
  });

  it('caps output, keeping the tail', async () => {
    const g = await guest();
    const ex = executor({ maxOutputBytes: 1000 });
    const r = await ex.exec(
      target(g.ip),
      'i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done\n',
      { timeoutMs: 10_000 },
    );
    expect(r.truncated).toBe(true);
    expect(r.stdout.length).toBe(1000);
    expect(r.stdout.endsWith('line 499\n')).toBe(true);
  });

  it('retries while the guest is still booting', async () => {
    const ex = executor();
    const ip = '10.244.9.9';
    const pending = ex.exec(target(ip), 'echo up', { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 150));
    await farm.start({ labvirt: [labvirtKey.public] }, { ip });
    expect((await pending).stdout).toBe('up\n');
  });

  it('gives up on an unreachable guest after the bounded retries', async () => {
    const ex = executor({ connectRetry: { attempts: 3, initialDelayMs: 10, maxDelayMs: 20 } });
    await expect(ex.exec(target('10.244.9.10'), 'true', { timeoutMs: 1000 })).rejects.toThrow(
      /no guest/,
    );
  });

  it('pins host keys per env and refuses a changed one', async () => {
    const g = await guest();
    const ex = executor();
    await ex.exec(target(g.ip), 'true', { timeoutMs: 5000 });
    await g.guest.stop();
    farm.guests.delete(g.ip);
    await farm.start({ labvirt: [labvirtKey.public] }, { ip: g.ip });
    await expect(ex.exec(target(g.ip), 'true', { timeoutMs: 5000 })).rejects.toThrow(
      HostKeyMismatchError,
    );
    await expect(ex.exec(target(g.ip), 'true', { timeoutMs: 5000 })).rejects.toThrow(
      /host key .* changed/,
    );
    ex.closeEnv('env00001');
    expect((await ex.exec(target(g.ip), 'echo ok', { timeoutMs: 5000 })).stdout).toBe('ok\n');
  });

  it("requires the host key the env's identity names, from the first contact, and logs in with the env's key", async () => {
    const envKey = newKey();
    const hostKey = newKey();
    const mismatches: string[] = [];
    const ex = executor({
      privateKey: undefined,
      identity: async () => ({
        privateKey: envKey.private,
        publicKey: envKey.public.trim(),
        hostKeys: { 'control-plane': hostKey.public.trim() },
      }),
      onHostKeyMismatch: (t, err) => mismatches.push(`${t.node}: ${err.offered}`),
    });
    // A guest of this env (its own key, the host key labvirt gave it) is reached.
    const own = await farm.start({ labvirt: [envKey.public] }, { hostKey: hostKey.private });
    expect((await ex.exec(target(own.ip), 'echo ok', { timeoutMs: 5000 })).stdout).toBe('ok\n');
    // Any other guest at the node's address is refused at once, even at a first contact.
    const impostor = await farm.start({ labvirt: [envKey.public] });
    const attempt = ex.exec(target(impostor.ip), 'echo reached', { timeoutMs: 5000 });
    await expect(attempt).rejects.toThrow(HostKeyMismatchError);
    await expect(attempt).rejects.toThrow(/host key of control-plane .* changed/);
    expect(mismatches).toHaveLength(1);
    // A guest that trusts only another key refuses the env's key.
    const other = await farm.start({ labvirt: [labvirtKey.public] }, { hostKey: hostKey.private });
    await expect(
      executor({
        connectRetry: { attempts: 1, initialDelayMs: 10, maxDelayMs: 10 },
        privateKey: undefined,
        identity: async () => ({
          privateKey: envKey.private,
          publicKey: envKey.public.trim(),
          hostKeys: { 'control-plane': hostKey.public.trim() },
        }),
      }).exec(target(other.ip, 'env00002'), 'true', { timeoutMs: 5000 }),
    ).rejects.toThrow(/authentication/i);
  });

  it('reuses one connection per env, node and user', async () => {
    const cp = await guest();
    const w = await guest();
    const ex = executor();
    // More at once than sshd's MaxSessions (10): they queue on the one connection.
    const many = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        ex.exec(target(cp.ip), `echo ${i}`, { timeoutMs: 10_000 }),
      ),
    );
    expect(many.map((r) => r.stdout)).toEqual(Array.from({ length: 20 }, (_, i) => `${i}\n`));
    await ex.exec(target(cp.ip), 'echo hi', { timeoutMs: 5000 });
    expect(ex.handshakes).toBe(1);
    await ex.exec(target(w.ip, 'env00001', 'worker-1'), 'echo hi', { timeoutMs: 5000 });
    expect(ex.handshakes).toBe(2);
    ex.closeEnv('env00001');
    await ex.exec(target(cp.ip), 'echo hi', { timeoutMs: 5000 });
    expect(ex.handshakes).toBe(3);
  });

  it('holds no connection for a released env, finishes running commands, and keeps its host keys pinned', async () => {
    const g = await guest();
    const ex = executor();
    await ex.exec(target(g.ip), 'true', { timeoutMs: 5000 });
    expect(ex.openConnections).toBe(1);
    const running = ex.exec(target(g.ip), 'sleep 0.3; echo done', { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 50));
    ex.releaseEnv('env00001');
    expect((await running).stdout).toBe('done\n');
    await expect.poll(() => ex.openConnections, { timeout: 5000 }).toBe(0);
    // The claim connects again; a guest that changed its host key meanwhile is refused.
    await g.guest.stop();
    farm.guests.delete(g.ip);
    await farm.start({ labvirt: [labvirtKey.public] }, { ip: g.ip });
    await expect(ex.exec(target(g.ip), 'true', { timeoutMs: 5000 })).rejects.toThrow(
      HostKeyMismatchError,
    );
  });

  it('closes a connection that stays idle', async () => {
    const g = await guest();
    const ex = executor({ idleCloseMs: 100 });
    await ex.exec(target(g.ip), 'true', { timeoutMs: 5000 });
    await expect.poll(() => ex.openConnections, { timeout: 5000 }).toBe(0);
    expect((await ex.exec(target(g.ip), 'echo again', { timeoutMs: 5000 })).stdout).toBe('again\n');
    expect(ex.handshakes).toBe(2);
  });

  it('forwards streams beside commands: they take no command slot and hold the connection open', async () => {
    // A TCP echo server standing in for the guest's 6443.
    const echo = createServer((sock) => sock.pipe(sock));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const echoPort = (echo.address() as AddressInfo).port;
    try {
      const g = await guest();
      await g.guest.stop();
      farm.guests.delete(g.ip);
      await farm.start(
        { labvirt: [labvirtKey.public] },
        {
          ip: g.ip,
          forwardLocalPort: (port) =>
            Promise.resolve(port === 6443 ? { host: '127.0.0.1', port: echoPort } : undefined),
        },
      );
      const ex = executor({ idleCloseMs: 100 });
      // More streams than sshd's MaxSessions, all open at once, and commands still run.
      const streams = await Promise.all(
        Array.from({ length: 12 }, () => ex.forward(target(g.ip), '127.0.0.1', 6443)),
      );
      const echoed = await Promise.all(
        streams.map(
          (s, i) =>
            new Promise<string>((r) => {
              s.once('data', (d: Buffer) => r(d.toString()));
              s.write(`ping ${i}`);
            }),
        ),
      );
      expect(echoed).toEqual(streams.map((_, i) => `ping ${i}`));
      expect((await ex.exec(target(g.ip), 'echo ok', { timeoutMs: 5000 })).stdout).toBe('ok\n');
      // Idle for commands, but streams are open: the connection stays.
      await new Promise((r) => setTimeout(r, 400));
      expect(ex.openConnections).toBe(1);
      expect(ex.handshakes).toBe(1);
      for (const s of streams) s.end();
      await expect.poll(() => ex.openConnections, { timeout: 5000 }).toBe(0);
    } finally {
      echo.close();
    }
  });

  it('reconnects when a pooled connection died', async () => {
    const hostKey = newKey().private;
    const g = await farm.start({ labvirt: [labvirtKey.public] }, { hostKey });
    const ex = executor();
    await ex.exec(target(g.ip), 'true', { timeoutMs: 5000 });
    await g.guest.stop();
    farm.guests.delete(g.ip);
    await farm.start({ labvirt: [labvirtKey.public] }, { ip: g.ip, hostKey });
    expect((await ex.exec(target(g.ip), 'echo back', { timeoutMs: 5000 })).stdout).toBe('back\n');
    expect(ex.handshakes).toBe(2);
  });

  it('waits for the readiness marker', async () => {
    const g = await farm.start({ labvirt: [labvirtKey.public] }, { markReadyAutomatically: false });
    const ex = executor();
    await expect(ex.waitReady(target(g.ip), { timeoutMs: 300, pollMs: 50 })).rejects.toThrow(
      /not ready/,
    );
    const waiting = ex.waitReady(target(g.ip), { timeoutMs: 20_000, pollMs: 50 });
    await mkdir(join(g.sandbox, 'var/lib/labvirt'), { recursive: true });
    await writeFile(join(g.sandbox, 'var/lib/labvirt/ready'), '');
    await waiting;
  });

  it('installs a student key idempotently, after which the student can log in', async () => {
    const g = await guest();
    const gatewayKey = newKey();
    const ex = executor({ gatewayPublicKey: gatewayKey.public });
    const student = newKey();
    await ex.installStudentKey(target(g.ip), `${student.public} laptop`);
    await ex.installStudentKey(target(g.ip), student.public);
    const file = join(g.sandbox, 'home/student/.ssh/authorized_keys');
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/labvirt-student$/);
    expect(lines[1]).toBe(`${gatewayKey.public.split(' ').slice(0, 2).join(' ')} labvirt-gateway`);
    expect(lines[2]).toMatch(/labvirt-env$/);
    // Made here (the guest had none), private as sshd requires.
    const modes = async (root: string) =>
      [
        (await stat(join(root, 'home/student/.ssh'))).mode & 0o777,
        (await stat(join(root, 'home/student/.ssh/authorized_keys'))).mode & 0o777,
      ].map((m) => m.toString(8));
    expect(await modes(g.sandbox)).toEqual(['700', '600']);
    // A node as cloud-init leaves it (the env's own student key in place):
    // that line stays first, the claim's keys follow once.
    const envStudent = newKey();
    const booted = await guest();
    await mkdir(join(booted.sandbox, 'home/student/.ssh'), { recursive: true, mode: 0o700 });
    await writeFile(
      join(booted.sandbox, 'home/student/.ssh/authorized_keys'),
      `${envStudent.public}\n`,
      { mode: 0o600 },
    );
    await ex.installStudentKey(target(booted.ip, 'env00002'), student.public);
    await ex.installStudentKey(target(booted.ip, 'env00002'), student.public);
    const bootedLines = (
      await readFile(join(booted.sandbox, 'home/student/.ssh/authorized_keys'), 'utf8')
    )
      .trim()
      .split('\n');
    expect(bootedLines).toHaveLength(4);
    expect(bootedLines[0]).toContain(envStudent.public.split(' ')[1]);
    expect(await modes(booted.sandbox)).toEqual(['700', '600']);
    // The student, and the gateway with its own key, get in as student.
    for (const key of [student, gatewayKey]) {
      const c = await connectClient({
        port: g.guest.port,
        username: 'student',
        privateKey: key.private,
      });
      expect((await run(c, 'echo $USER')).stdout).toBe('student\n');
      c.end();
    }
    await expect(ex.installStudentKey(target(g.ip), 'ssh-ed25519 $(touch /tmp/x)')).rejects.toThrow(
      /public key/,
    );
    await expect(
      ex.installStudentKey(target(g.ip), `command="touch /tmp/x" ${student.public}`),
    ).rejects.toThrow(/public key/);
    await expect(
      ex.installStudentKey(target(g.ip), `${student.public}\n${newKey().public}`),
    ).rejects.toThrow(/public key/);
  });

  it('sends every key install the same exec request: the keys travel on stdin only', async () => {
    const seen: { command: string; stdin: string }[] = [];
    const hostKey = generateKeyPair();
    const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
      client.on('authentication', (ctx) =>
        ctx.method === 'publickey' ? ctx.accept() : ctx.reject(),
      );
      client.on('ready', () =>
        client.on('session', (accept) =>
          accept().on('exec', (acceptExec, _reject, info) => {
            const stream = acceptExec();
            let stdin = '';
            stream.on('data', (d: Buffer) => (stdin += d.toString()));
            stream.on('end', () => {
              seen.push({ command: info.command, stdin });
              stream.exit(0);
              stream.end();
            });
          }),
        ),
      );
      client.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const ex = executor({ resolve: () => ({ host: '127.0.0.1', port }) });
      const [a, b] = [newKey(), newKey()];
      await ex.installStudentKey(target('10.244.9.1'), a.public);
      await ex.installStudentKey(target('10.244.9.1'), `${b.public} laptop`);
      expect(seen).toHaveLength(2);
      expect(seen[1]!.command).toBe(seen[0]!.command);
      for (const [i, key] of [a, b].entries()) {
        const blob = key.public.split(' ')[1]!;
        expect(seen[i]!.command).not.toContain(blob);
        expect(seen[i]!.stdin).toContain(blob);
      }
      expect(seen[1]!.command).not.toContain('laptop');
    } finally {
      // The executor's pooled connection ends first: the server's close waits for it.
      for (const e of executors.splice(0)) await e.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('installs a student key when labvirt logs in as root', async () => {
    const g = await farm.start({ root: [labvirtKey.public], student: [] });
    const ex = executor({ user: 'root' });
    const student = newKey();
    await ex.installStudentKey(target(g.ip), student.public);
    const file = join(g.sandbox, 'home/student/.ssh/authorized_keys');
    expect(await readFile(file, 'utf8')).toContain(student.public.split(' ')[1]);
    const c = await connectClient({
      port: g.guest.port,
      username: 'student',
      privateKey: student.private,
    });
    expect((await run(c, 'echo $USER')).stdout).toBe('student\n');
    c.end();
  });

  it('stops a script when aborted', async () => {
    const g = await guest();
    const ex = executor();
    const ac = new AbortController();
    const p = ex.exec(target(g.ip), 'echo go; sleep 30', {
      timeoutMs: 20_000,
      signal: ac.signal,
      onStdout: () => ac.abort('test'),
    });
    await expect(p).rejects.toThrow(/aborted/);
  });
});
