import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import type { Client, SFTPWrapper } from 'ssh2';
import { afterEach, describe, expect, it } from 'vitest';
import { GuestFarm, connectClient, newKey, readUntil, run } from './fixtures.js';

const farm = new GuestFarm();
const clients: Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end();
  await farm.stopAll();
});

async function login(port: number, username: string, privateKey: string) {
  const c = await connectClient({ port, username, privateKey });
  clients.push(c);
  return c;
}

function sftpOf(c: Client): Promise<SFTPWrapper> {
  return new Promise((res, rej) => c.sftp((err, s) => (err ? rej(err) : res(s))));
}

describe('sim guest sshd', () => {
  it('runs a command for a cloud-init key in the user home of its own root filesystem', async () => {
    const key = newKey();
    const g = await farm.start({ labvirt: [key.public] });
    const c = await login(g.guest.port, 'labvirt', key.private);
    const r = await run(
      c,
      'echo "$USER $PWD $HOME ${LABVIRT_GUEST_ROOT:-none}"; hostname; echo oops >&2; exit 7',
    );
    expect(r.code).toBe(7);
    expect(r.stdout).toBe('labvirt /home/labvirt /home/labvirt none\ncontrol-plane\n');
    expect(r.stderr).toBe('oops\n');
    // Its / is the sandbox directory: what it writes under /etc lands there.
    expect((await run(c, 'echo hi > /etc/motd && id -u')).stdout).toBe('0\n');
    expect(await readFile(join(g.sandbox, 'etc/motd'), 'utf8')).toBe('hi\n');
  });

  it('passes stdin through and reports exit signals', async () => {
    const key = newKey();
    const g = await farm.start({ labvirt: [key.public] });
    const c = await login(g.guest.port, 'labvirt', key.private);
    expect((await run(c, 'tr a-z A-Z', { stdin: 'hello\n' })).stdout).toBe('HELLO\n');
    const killed = await new Promise<{ signal?: string }>((resolve, reject) => {
      c.exec('echo started; sleep 30', (err, stream) => {
        if (err) return reject(err);
        let signal: string | undefined;
        stream.on('exit', (_c: number | null, s?: string) => (signal = s));
        stream.on('close', () => resolve({ signal }));
        readUntil(stream, /started/).then(() => stream.signal('KILL'), reject);
      });
    });
    expect(killed.signal).toBe('SIGKILL');
  });

  it('refuses a wrong key, an unknown user and a user without keys', async () => {
    const key = newKey();
    const g = await farm.start({ labvirt: [key.public], student: [] });
    await expect(login(g.guest.port, 'labvirt', newKey().private)).rejects.toThrow(
      /authentication/i,
    );
    await expect(login(g.guest.port, 'nobody', key.private)).rejects.toThrow(/authentication/i);
    await expect(login(g.guest.port, 'student', key.private)).rejects.toThrow(/authentication/i);
  });

  it('reads authorized_keys at each attempt, and top-level keys belong to ubuntu', async () => {
    const key = newKey();
    const other = newKey();
    const g = await farm.start(
      {},
      { userData: `#cloud-config\nssh_authorized_keys:\n  - ${other.public}\n` },
    );
    await expect(login(g.guest.port, 'student', key.private)).rejects.toThrow(/authentication/i);
    await mkdir(join(g.sandbox, 'home/student/.ssh'), { recursive: true });
    await writeFile(
      join(g.sandbox, 'home/student/.ssh/authorized_keys'),
      `# comment\nrestrict ${key.public} me\n`,
    );
    const c = await login(g.guest.port, 'student', key.private);
    expect((await run(c, 'whoami_is=$USER; echo $whoami_is')).stdout).toBe('student\n');
    await login(g.guest.port, 'ubuntu', other.private);
  });

  it('accepts only LABVIRT_*, LAB_*, LANG and LC_* env requests', async () => {
    const key = newKey();
    const g = await farm.start({ labvirt: [key.public] });
    const c = await login(g.guest.port, 'labvirt', key.private);
    const r = await run(c, 'echo "$LAB_ID|$LANG|${FOO:-unset}|${LD_PRELOAD:-unset}"', {
      env: { LAB_ID: 'lab one', LANG: 'C.UTF-8', FOO: 'x', LD_PRELOAD: '/tmp/evil.so' },
    });
    expect(r.stdout).toBe('lab one|C.UTF-8|unset|unset\n');
  });

  it('serves sftp confined to the sandbox', async () => {
    const key = newKey();
    const g = await farm.start({ labvirt: [key.public] });
    const c = await login(g.guest.port, 'labvirt', key.private);
    const sftp = await sftpOf(c);
    const p = <T>(f: (cb: (err: Error | null | undefined, v: T) => void) => void) =>
      new Promise<T>((res, rej) => f((err, v) => (err ? rej(err) : res(v))));
    const data = Buffer.from('x'.repeat(100_000) + 'end');
    await p<void>((cb) => sftp.writeFile('notes.txt', data, (e) => cb(e, undefined)));
    expect(
      (await p<Buffer>((cb) => sftp.readFile('/home/labvirt/notes.txt', cb))).equals(data),
    ).toBe(true);
    expect(await readFile(join(g.sandbox, 'home/labvirt/notes.txt'))).toEqual(data);
    expect(await p<string>((cb) => sftp.realpath('.', cb))).toBe('/home/labvirt');
    expect(await p<string>((cb) => sftp.realpath('../../../../..', cb))).toBe('/');
    await p<void>((cb) => sftp.mkdir('dir', (e) => cb(e, undefined)));
    await p<void>((cb) => sftp.rename('notes.txt', 'dir/n.txt', (e) => cb(e, undefined)));
    const list = await p<{ filename: string }[]>((cb) => sftp.readdir('dir', cb));
    expect(list.map((e) => e.filename)).toEqual(['n.txt']);
    expect((await p<{ size: number }>((cb) => sftp.stat('dir/n.txt', cb))).size).toBe(data.length);
    await p<void>((cb) => sftp.unlink('dir/n.txt', (e) => cb(e, undefined)));
    await expect(p<unknown>((cb) => sftp.stat('dir/n.txt', cb))).rejects.toThrow(/No such file/);
    // Escapes land inside the sandbox.
    await p<void>((cb) => sftp.writeFile('/../../../escape.txt', 'x', (e) => cb(e, undefined)));
    expect(existsSync(join(g.sandbox, 'escape.txt'))).toBe(true);
  });

  it('writes the readiness marker after the bootstrap delay, unless told not to', async () => {
    const key = newKey();
    const ready = await farm.start({ labvirt: [key.public] }, { bootstrapDelayMs: 20 });
    const never = await farm.start(
      { labvirt: [key.public] },
      { bootstrapDelayMs: 0, markReadyAutomatically: false },
    );
    const marker = (s: string) => join(s, 'var/lib/labvirt/ready');
    while (!existsSync(marker(ready.sandbox))) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(marker(never.sandbox))).toBe(false);
  });

  it('forwards to its own local ports and to peers, and refuses the rest', async () => {
    const echo: NetServer = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const echoPort = (echo.address() as { port: number }).port;
    try {
      const key = newKey();
      const worker = await farm.start({ labvirt: [key.public] });
      const g = await farm.start(
        { labvirt: [key.public] },
        {
          forwardLocalPort: async (port) =>
            port === 6443 ? { host: '127.0.0.1', port: echoPort } : undefined,
        },
      );
      const c = await login(g.guest.port, 'labvirt', key.private);
      const fwd = (host: string, port: number) =>
        new Promise<NodeJS.ReadWriteStream & { end(): void }>((res, rej) =>
          c.forwardOut('127.0.0.1', 1234, host, port, (err, s) => (err ? rej(err) : res(s))),
        );
      const s = await fwd('localhost', 6443);
      s.write('ping');
      await readUntil(s, /ping/);
      s.end();
      const peer = await fwd(worker.ip, 22);
      await readUntil(peer, /^SSH-2\.0-/);
      peer.end();
      await expect(fwd('localhost', 8080)).rejects.toThrow();
      await expect(fwd('10.99.0.1', 22)).rejects.toThrow();
    } finally {
      echo.close();
    }
  });

  it('gives an interactive shell on a pty', async () => {
    const key = newKey();
    const g = await farm.start({ labvirt: [key.public] });
    const c = await login(g.guest.port, 'labvirt', key.private);
    const out = await new Promise<string>((resolve, reject) => {
      c.shell({ rows: 30, cols: 90, term: 'xterm' }, (err, stream) => {
        if (err) return reject(err);
        stream.write('stty size; echo "answer=$((6*7))"\n');
        readUntil(stream, /answer=42/).then((seen) => {
          stream.write('exit\n');
          resolve(seen);
        }, reject);
      });
    });
    expect(out).toMatch(/30 90/);
  });
});
