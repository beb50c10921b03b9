import { Writable } from 'node:stream';
import { stripVTControlCharacters } from 'node:util';
import { pino } from 'pino';
import type { Client, ClientChannel } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { TestStack } from '../helpers/stack.js';
import { startTestStack } from '../helpers/stack.js';
import { connectClient, readUntil } from '../sim-guest/fixtures.js';
import { webLink } from './helpers.js';

/**
 * The echo on a line of its own, in the terminal's text without its control
 * sequences (`plain`). When tmux redraws the screen it puts them inside
 * lines: an erase-to-end (ESC [K) before a newline (the final run of
 * 2026-12-06 timed out on that), a cursor move in the middle of a line it
 * scrolled (`echo step` ESC [2S ESC [22;12H `-19`: the full run of
 * 2026-12-06 15:37 timed out on that).
 */
const WEB_READY = /web-ready\r?\n/;
const plain = (terminal: string) => stripVTControlCharacters(terminal);

/**
 * The browser terminal enters the gateway in process (no SSH between the
 * bridge and the gateway): it must be refused, warned and cut exactly where
 * a student's own SSH client is, and leave the same audit lines.
 */
describe('web terminals under the SSH gateway rules', () => {
  let stack: TestStack;
  /** labvirt's clock runs this far ahead of the real one (the idle test moves it). */
  let skew = 0;
  const lines: Record<string, unknown>[] = [];
  const sessions: Record<'alice' | 'bob' | 'carol', { id: string; key: string }> = {} as never;
  const clients: Client[] = [];

  beforeAll(async () => {
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          for (const line of chunk.toString().split('\n').filter(Boolean))
            lines.push(JSON.parse(line) as Record<string, unknown>);
          cb();
        },
      }),
    );
    stack = await startTestStack({
      logger,
      now: () => Date.now() + skew,
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 3, maxTotal: 4 },
          'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
        },
        ssh: { idleTimeoutMinutes: 1 },
      },
    });
    await stack.fillPool('v1.30-1node', 3, { timeoutMs: 90_000 });
    for (const student of ['alice', 'bob', 'carol'] as const) {
      const s = await stack.labvirt.service.start({ student, labId: 'fixture-one' });
      sessions[student] = { id: s.id, key: s.privateKey! };
    }
    for (const s of Object.values(sessions)) await stack.untilSession(s.id, 'active', 60_000);
  }, 150_000);
  afterAll(async () => {
    for (const c of clients) c.end();
    await stack?.stop();
  });

  const audits = (kind: string, sessionId: string) =>
    lines.filter((l) => l.audit === kind && l.sessionId === sessionId);
  const viaWeb = (l: Record<string, unknown>) => l.source === 'in-process:0';
  const viaSsh = (l: Record<string, unknown>) => String(l.source).startsWith('127.0.0.1:');

  /** Signs in with the session's single-use link; its cookie. */
  async function cookieFor(sessionId: string): Promise<string> {
    const link = await webLink(stack, sessionId);
    const res = await fetch(link.body.url, { redirect: 'manual' });
    return res.headers.get('set-cookie')!.split(';')[0]!;
  }

  /** Opens a terminal socket; resolves with it open, or with the HTTP status that refused it. */
  function openSocket(sessionId: string, cookie: string): Promise<WebTerminal | number> {
    const base = stack.labvirt.apiUrl!;
    const ws = new WebSocket(
      `${base.replace('http', 'ws')}/s/${sessionId}/terminal?node=control-plane&cols=80&rows=24`,
      { headers: { cookie, origin: base } },
    );
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WebTerminal(ws)));
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', reject);
    });
  }

  async function sshShell(s: { id: string; key: string }) {
    const c = await connectClient({
      port: stack.labvirt.gatewayPort!,
      username: s.id,
      privateKey: s.key,
    });
    clients.push(c);
    const sh = await new Promise<ClientChannel>((res, rej) =>
      c.shell({ term: 'xterm', rows: 24, cols: 80 }, (err, ch) => (err ? rej(err) : res(ch))),
    );
    sh.resume();
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    return { c, sh, closed };
  }

  /** What an SSH login says when refused (the gateway's keyboard-interactive text). */
  async function refusedSsh(sessionId: string, privateKey: string): Promise<string> {
    const { default: ssh2 } = await import('ssh2');
    return new Promise((resolve, reject) => {
      const c = new ssh2.Client();
      let told = '';
      c.on('keyboard-interactive', (_n, instructions, _l, _p, finish) => {
        told += instructions;
        finish(['']);
      });
      c.once('ready', () => reject(new Error('login unexpectedly accepted')));
      c.once('error', (err) => (/authentication/i.test(err.message) ? resolve(told) : reject(err)));
      c.connect({
        host: '127.0.0.1',
        port: stack.labvirt.gatewayPort!,
        username: sessionId,
        privateKey,
        tryKeyboard: true,
      });
    });
  }

  it("refuses another session's terminal with a student's cookie, as SSH refuses her key there", async () => {
    const aliceCookie = await cookieFor(sessions.alice.id);
    expect(await openSocket(sessions.bob.id, aliceCookie)).toBe(401);
    expect(await refusedSsh(sessions.bob.id, sessions.alice.key)).toMatch(
      /this key is not the one for session/,
    );
    // Neither way in opened a connection to bob's session.
    expect(audits('ssh.connection.open', sessions.bob.id)).toHaveLength(0);
    expect(audits('ssh.auth.refused', sessions.bob.id).length).toBeGreaterThan(0);
  });

  it('warns, then cuts an idle web terminal as it does an idle SSH shell, audited alike', async () => {
    const s = sessions.alice;
    const web = (await openSocket(s.id, await cookieFor(s.id))) as WebTerminal;
    web.type('echo web-ready\n');
    await web.until(WEB_READY);
    const ssh = await sshShell(s);
    ssh.sh.write('echo ssh-ready\n');
    await readUntil(ssh.sh, /ssh-ready\r?\n/);
    // Half a minute without input by labvirt's clock: the warning (idle cut at 60 s).
    skew += 35_000;
    const sshWarned = readUntil(ssh.sh.stderr, /disconnected in \d+ s/);
    expect(await web.notice(/no input for a while/)).toMatch(/disconnected in \d+ s/);
    await sshWarned;
    skew += 30_000;
    const closed = await web.closed();
    expect(closed).toMatchObject({
      ended: false,
      reason: 'disconnecting after 60 s without input.',
    });
    await ssh.closed;
    await stack.until(
      async () => audits('ssh.connection.close', s.id).length >= 2,
      'both connections audited as closed',
    );
    const close = audits('ssh.connection.close', s.id);
    expect(close.find(viaWeb)).toMatchObject({ reason: 'idle', student: 'alice' });
    expect(close.find(viaSsh)).toMatchObject({ reason: 'idle', student: 'alice' });
    expect(audits('ssh.connection.open', s.id).filter(viaWeb)).toHaveLength(1);
    expect(lines.some((l) => l.audit === 'web.terminal.close' && l.sessionId === s.id)).toBe(true);
  }, 180_000);

  it('warns a web terminal and an SSH shell before the session ends, cuts both at the end mid-shell, then refuses both', async () => {
    const s = sessions.carol;
    const cookie = await cookieFor(s.id);
    const web = (await openSocket(s.id, cookie)) as WebTerminal;
    web.type('echo web-ready\n');
    await web.until(WEB_READY);
    const ssh = await sshShell(s);
    let told = '';
    ssh.sh.stderr.on('data', (d: Buffer) => (told += d.toString()));
    ssh.sh.write('echo ssh-ready\n');
    await readUntil(ssh.sh, /ssh-ready\r?\n/);
    const expiresAt = Date.parse((await stack.labvirt.service.status(s.id)).expiresAt!);
    // labvirt's clock moves to twenty seconds before the end in steps well
    // under the idle cut (60 s), with input after each, as a student working.
    let sshSeen = '';
    ssh.sh.on('data', (d: Buffer) => (sshSeen += d.toString()));
    for (let step = 0; Date.now() + skew < expiresAt - 20_000; step++) {
      skew = Math.min(skew + 45_000, expiresAt - 20_000 - Date.now());
      web.type(`echo step-${step}\n`);
      ssh.sh.write(`echo step-${step}\n`);
      await web.until(new RegExp(`step-${step}\r?\n`));
      await stack.until(
        async () => new RegExp(`step-${step}\r?\n`).test(plain(sshSeen)),
        'the echo',
      );
    }
    // Both are warned.
    expect(await web.notice(/your lab session ends in \d+ s/)).toMatch(/Save your work/);
    await stack.until(async () => /your lab session ends in \d+ s/.test(told), 'the SSH warning');
    // Past the end: the gateway's own clock cuts both, before any sweep ends the session.
    skew = expiresAt + 1000 - Date.now();
    expect(await web.closed()).toMatchObject({ ended: true, reason: 'your lab session has ended' });
    expect(web.notices).toContain('your lab session has ended; disconnecting.');
    await ssh.closed;
    expect(told).toContain('[labvirt] your lab session has ended; disconnecting.');
    await stack.until(
      async () => audits('ssh.connection.close', s.id).length >= 2,
      'both connections audited as closed',
    );
    const close = audits('ssh.connection.close', s.id);
    expect(close.find(viaWeb)).toMatchObject({ reason: 'session expired' });
    expect(close.find(viaSsh)).toMatchObject({ reason: 'session expired' });
    // Ended by the sweep: the page's socket and an SSH login are both refused.
    await stack.labvirt.runMaintenance('expire');
    expect((await stack.labvirt.service.status(s.id)).state).toBe('ended');
    expect(await openSocket(s.id, cookie)).toBe(410);
    expect(await refusedSsh(s.id, s.key)).toMatch(/no active lab session|ended at/);
  }, 180_000);
});

/** A terminal socket as the page's script uses it. */
class WebTerminal {
  private output = '';
  readonly notices: string[] = [];
  private end: { reason: string; ended: boolean } | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (binary) this.output += data.toString('utf8');
      else {
        const m = JSON.parse(data.toString('utf8')) as {
          type: string;
          text?: string;
          reason?: string;
          ended?: boolean;
        };
        if (m.type === 'notice') this.notices.push(m.text!);
        if (m.type === 'closed') this.end = { reason: m.reason!, ended: m.ended! };
      }
      for (const w of [...this.waiters]) w();
    });
  }

  type(text: string): void {
    this.ws.send(Buffer.from(text), { binary: true });
  }

  // Each wait is bounded (30 s) and names what it waited for; the tests' own
  // timeouts leave room for several such waits on a loaded machine (the
  // `web-ready` echo outlasted a 60 s test there once).
  private wait<T>(value: () => T | undefined, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(look);
        reject(new Error(`timed out waiting for ${what}; output: ${this.output.slice(-300)}`));
      }, 30_000);
      const look = () => {
        const v = value();
        if (v === undefined) return;
        clearTimeout(timer);
        this.waiters.delete(look);
        resolve(v);
      };
      this.waiters.add(look);
      look();
    });
  }

  /** Waits for `pattern` in what the terminal shows, its control sequences left out. */
  until(pattern: RegExp): Promise<string> {
    return this.wait(() => {
      const text = plain(this.output);
      return pattern.test(text) ? text : undefined;
    }, `${pattern}`);
  }

  notice(pattern: RegExp): Promise<string> {
    return this.wait(() => this.notices.find((n) => pattern.test(n)), `a notice ${pattern}`);
  }

  closed(): Promise<{ reason: string; ended: boolean }> {
    return this.wait(() => this.end, 'the terminal to close');
  }
}
