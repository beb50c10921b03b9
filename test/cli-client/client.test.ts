import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestApi, TEST_TOKEN, type TestApi } from '../api/fixtures/harness.js';
import { runCli, spawnCli } from './fixtures/run-cli.js';
import { restartSafePort } from '../../src/net/ports.js';

let api: TestApi;
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'labvirt-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(async () => {
  api = await startTestApi();
});
afterEach(async () => {
  await api.close();
});

/**
 * A loopback port nothing listens on: outside the kernel's ephemeral range,
 * so no other test's listen on port 0 (or outgoing connection) takes it.
 */
const closedPort = () => restartSafePort();

const env = () => ({
  LABVIRT_API_URL: api.url,
  LABVIRT_API_TOKEN: TEST_TOKEN,
  LABVIRT_CONFIG: undefined,
});
const cli = (...args: string[]) => runCli(args, env());
const startSession = async (student = 'alice') => {
  const r = await cli(
    'start',
    '--lab',
    'broken-kubelet',
    '--student',
    student,
    '--json',
    '--key-file',
    join(dir, `${student}-${Date.now()}.key`),
  );
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { id: string; privateKeyFile?: string };
};

describe('labvirt start', () => {
  it('prints how to connect and saves the generated private key 0600', async () => {
    const keyFile = join(dir, 'start.key');
    const r = await cli(
      'start',
      '--lab',
      'broken-kubelet',
      '--student',
      'alice',
      '--key-file',
      keyFile,
    );
    expect(r.code).toBe(0);
    const id = /Session (s-[0-9a-f]+)/.exec(r.stdout)?.[1];
    expect(id).toBeDefined();
    expect(r.stdout).toContain('lab broken-kubelet (The kubelet will not start)');
    expect(r.stdout).toContain(`connect:  ssh -i ${keyFile} -p 2222 ${id}@127.0.0.1`);
    expect(r.stdout).toContain('nodes:    control-plane, worker-1, worker-2');
    expect(r.stdout).toContain(`Private key saved to ${keyFile} (mode 0600)`);
    expect(r.stdout).not.toContain('PRIVATE KEY-----');
    expect(readFileSync(keyFile, 'utf8')).toContain('BEGIN OPENSSH PRIVATE KEY');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it('never overwrites an existing key file', async () => {
    const keyFile = join(dir, 'taken.key');
    writeFileSync(keyFile, 'precious');
    const r = await cli(
      'start',
      '--lab',
      'broken-kubelet',
      '--student',
      'bob',
      '--key-file',
      keyFile,
    );
    expect(r.code).toBe(0);
    expect(readFileSync(keyFile, 'utf8')).toBe('precious');
    expect(r.stdout).toContain(`Private key saved to ${keyFile}.1`);
  });

  it('uses the student public key, refuses a private key file', async () => {
    const pub = join(dir, 'id.pub');
    writeFileSync(pub, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0= me@laptop\n');
    const ok = await cli(
      'start',
      '--lab',
      'broken-kubelet',
      '--student',
      'carol',
      '--public-key',
      pub,
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).not.toContain('Private key saved');
    const priv = join(dir, 'id');
    writeFileSync(priv, '-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n');
    const bad = await cli(
      'start',
      '--lab',
      'broken-kubelet',
      '--student',
      'dan',
      '--public-key',
      priv,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('is a private key');
  });

  it('--json prints the session with the key file instead of the key; --request-id repeats', async () => {
    const args = [
      'start',
      '--lab',
      'broken-kubelet',
      '--student',
      'erin',
      '--json',
      '--request-id',
      'r-1',
    ];
    const first = await cli(...args, '--key-file', join(dir, 'erin.key'));
    const view = JSON.parse(first.stdout);
    expect(view.privateKey).toBeUndefined();
    expect(view.privateKeyFile).toBe(join(dir, 'erin.key'));
    const again = await cli(...args);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).id).toBe(view.id);
  });

  it('waits until the environment is ready', async () => {
    api.service.preparingReads = 1;
    const r = await cli(
      'start',
      '--lab',
      'broken-kubelet',
      '--student',
      'fay',
      '--public-key',
      join(dir, 'id.pub'),
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('preparing your environment');
    expect(r.stdout).toContain('state:    active');
  });

  it('gives up waiting after --timeout with exit 1, keeping the key file and saying what to do', async () => {
    api.service.preparingReads = 1000;
    const keyFile = join(dir, 'slow.key');
    const r = await cli(
      'start',
      '--lab',
      'broken-kubelet',
      '--student',
      'slow',
      '--timeout',
      '0.5',
      '--key-file',
      keyFile,
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`Private key saved to ${keyFile}`);
    expect(r.stdout).toContain('state:    preparing');
    expect(r.stderr).toMatch(
      /session s-\w+ is still preparing after 0.5 s; follow it with `labvirt status s-\w+`/,
    );
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it('API refusals: exit 1 with the code and what to do', async () => {
    await startSession('gus');
    const limit = await cli('start', '--lab', 'broken-kubelet', '--student', 'gus');
    expect(limit.code).toBe(1);
    expect(limit.stderr).toMatch(/LIMIT_REACHED: .*\n {2}your sessions: s-/);
    const unknown = await cli('start', '--lab', 'no-such-lab', '--student', 'gus2');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('UNKNOWN_LAB');
    expect(unknown.stderr).toContain('available labs: broken-kubelet, exotic-lab');
    const invalid = await cli('start', '--lab', 'Bad_Lab', '--student', 'gus3');
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('INVALID_REQUEST: field "labId" must match pattern');
  });
});

describe('session commands', () => {
  it('status, sessions, extend, hint, stop', async () => {
    const s = await startSession('hal');
    const status = await cli('status', s.id);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`Session ${s.id} for hal`);
    expect(status.stdout).toContain('hints:    0/2 used');

    const list = await cli('sessions');
    expect(list.stdout.split('\n')[0]).toMatch(/^SESSION +STUDENT +LAB +STATE/);
    expect(list.stdout).toContain(s.id);

    const ext = await cli('extend', s.id);
    expect(ext.code).toBe(0);
    expect(ext.stdout).toMatch(new RegExp(`Session ${s.id} now expires at .* \\(in \\d+ min\\)`));
    const ext2 = await cli('extend', s.id);
    expect(ext2.code).toBe(1);
    expect(ext2.stderr).toContain('MAX_EXTENSION');

    const hint = await cli('hint', s.id);
    expect(hint.stdout.trim()).toBe('Hint 1/2: Look at journalctl -u kubelet.');

    const stop = await cli('stop', s.id);
    expect(stop.stdout.trim()).toBe(`Session ${s.id} stopped (released).`);
    expect((await cli('sessions', '--student', 'hal')).stdout.trim()).toBe('no sessions');
    expect((await cli('sessions', '--student', 'hal', '--all')).stdout).toContain(
      'ended (released)',
    );
  });

  it('check: ✓/✗ per check with points and FAIL messages; exit 3 until passed, then 0', async () => {
    const s = await startSession('ivy');
    const failing = await cli('check', s.id);
    expect(failing.code).toBe(3);
    expect(failing.stdout).toContain('✓ node-ready (1 pt): all nodes are Ready');
    expect(failing.stdout).toContain('✗ kubelet-running (0 pts): the kubelet runs on worker-1');
    expect(failing.stdout).toContain('    FAIL: kubelet on worker-1 is not active');
    expect(failing.stdout).toContain('Score 1/3: not passed yet');
    api.service.solved.add(s.id);
    const passing = await cli('check', s.id, '--json');
    expect(passing.code).toBe(0);
    expect(JSON.parse(passing.stdout)).toMatchObject({ passed: true, score: 3, maxScore: 3 });
  });

  it("--as acts for a student and cannot touch another student's session", async () => {
    const s = await startSession('jo');
    const r = await cli('status', s.id, '--as', 'mallory');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('NOT_YOUR_SESSION');
    expect((await cli('status', s.id, '--as', 'jo')).code).toBe(0);
    const started = await cli('start', '--lab', 'broken-kubelet', '--as', 'kim', '--json');
    expect(JSON.parse(started.stdout).student).toBe('kim');
    rmSync(JSON.parse(started.stdout).privateKeyFile);
  });

  it('unknown session: exit 1 SESSION_NOT_FOUND; --json prints the error object', async () => {
    const r = await cli('status', 's-0000000000', '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'SESSION_NOT_FOUND', status: 404 });
  });
});

describe('pool and envs', () => {
  it('pool status prints a table per flavor and state', async () => {
    const r = await cli('pool', 'status');
    expect(r.code).toBe(0);
    const [header, row] = r.stdout.split('\n');
    expect(header).toMatch(
      /^FLAVOR +PROVISIONING +BOOTING +WARM +CLAIMED .* TARGET +MAX +WAITING +CAPACITY$/,
    );
    expect(row).toMatch(/^v1\.30-3node +1 +0 +2 +0 .* 3 +10 +0 +ok$/);
    expect(r.stdout).toContain('scheduled target "tuesday-class" keeps 3 warm');
  });

  it('env list filters by state; a bad state is a usage error', async () => {
    await startSession('lee');
    const r = await cli('env', 'list', '--state', 'active');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ENV +NAMESPACE +FLAVOR +STATE/);
    expect(r.stdout).toContain('lee');
    expect(r.stdout).not.toContain('warm0000');
    const bad = await cli('env', 'list', '--state', 'sleepy');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('Allowed choices are provisioning');
  });
});

describe('connection problems', () => {
  it('connection refused: exit 4 and asks whether labvirt serve is running', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const r = await runCli(['pool', 'status'], { ...env(), LABVIRT_API_URL: url });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`cannot reach the labvirt API at ${url} (connection refused)`);
    expect(r.stderr).toContain(`is \`labvirt serve\` running at ${url}?`);
  });

  it('a wrong token: exit 5 naming the variable; no token: exit 2', async () => {
    const wrong = await runCli(['pool', 'status'], {
      ...env(),
      LABVIRT_API_TOKEN: 'nope-nope-nope-nope',
    });
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toContain('rejected the token in $LABVIRT_API_TOKEN (401)');
    expect(wrong.stderr).not.toContain('nope-nope');
    const none = await runCli(['pool', 'status'], { ...env(), LABVIRT_API_TOKEN: undefined });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('set $LABVIRT_API_TOKEN');
  });

  it('--api-url wins over the environment; the config names the token variable', async () => {
    const cfg = join(dir, 'labvirt.yaml');
    writeFileSync(cfg, 'api:\n  host: 0.0.0.0\n  port: 1\n  tokenEnv: MY_LABVIRT_TOKEN\n');
    const r = await runCli(['--config', cfg, 'pool', 'status', '--api-url', api.url, '--json'], {
      LABVIRT_API_URL: 'http://127.0.0.1:1',
      MY_LABVIRT_TOKEN: TEST_TOKEN,
      LABVIRT_API_TOKEN: undefined,
    });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).flavors[0].flavor).toBe('v1.30-3node');
    // Without --api-url or $LABVIRT_API_URL the config's host/port are used (0.0.0.0 → loopback).
    const fromConfig = await runCli(['--config', cfg, 'pool', 'status'], {
      LABVIRT_API_URL: undefined,
      MY_LABVIRT_TOKEN: TEST_TOKEN,
    });
    expect(fromConfig.code).toBe(4);
    expect(fromConfig.stderr).toContain('http://127.0.0.1:1');
    const badUrl = await cli('pool', 'status', '--api-url', 'ftp://x');
    expect(badUrl.code).toBe(2);
  });

  it('usage mistakes exit 2', async () => {
    const missing = await cli('start', '--student', 'x');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '--lab <lab>' not specified");
    expect((await cli('status')).code).toBe(2);
    expect((await cli('stop', 's-1', '--bogus')).code).toBe(2);
    const nobody = await cli('start', '--lab', 'broken-kubelet');
    expect(nobody.code).toBe(2);
    expect(nobody.stderr).toContain('--student');
  });

  it('--help documents options and exit codes', async () => {
    const r = await cli('check', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--api-url <url>');
    expect(r.stdout).toContain('--as <student>');
    expect(r.stdout).toContain('3 check not passed, 4 API unreachable, 5 token rejected');
  });
});

describe('bin/labvirt.js', () => {
  it('runs the client commands as a real process with the documented exit codes', async () => {
    const s = await startSession('pat');
    const env = { LABVIRT_API_URL: api.url, LABVIRT_API_TOKEN: TEST_TOKEN };
    const closed = await closedPort();
    const [status, check, refused] = await Promise.all([
      spawnCli(['status', s.id], env),
      spawnCli(['check', s.id], env),
      spawnCli(['pool', 'status'], { ...env, LABVIRT_API_URL: `http://127.0.0.1:${closed}` }),
    ]);
    expect(status.stderr).toBe('');
    expect([status.code, status.stdout]).toEqual([
      0,
      expect.stringContaining(`Session ${s.id} for pat`),
    ]);
    expect([check.code, check.stdout]).toEqual([
      3,
      expect.stringContaining('Score 1/3: not passed yet'),
    ]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(`is \`labvirt serve\` running at http://127.0.0.1:${closed}?`);
  }, 60_000);
});
