import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { blockActionPayload } from '../helpers/slack-request.js';
import {
  socketCommand,
  startSocketModeServer,
  type SocketModeServer,
} from '../helpers/socket-mode.js';
import { shownText } from './helpers.js';
import { devArgs, fixtureDevConfig, spawnLabvirt } from '../helpers/cli-env.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Slack's JSON is checked field by field
type Json = any;

const USER = 'U0DEV01';

// Distinct values, so that any of them showing up in the output is a leak.
const SECRETS = {
  SLACK_BOT_TOKEN: `xoxb-dev-${randomBytes(12).toString('hex')}`,
  SLACK_APP_TOKEN: `xapp-dev-${randomBytes(12).toString('hex')}`,
  SLACK_SIGNING_SECRET: randomBytes(16).toString('hex'),
};

/** The buttons of a message, found anywhere in its blocks. */
function buttonsOf(message: { blocks?: unknown[] }): Json[] {
  const found: Json[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      if ((node as Json).type === 'button') found.push(node);
      Object.values(node).forEach(walk);
    }
  };
  walk(message.blocks ?? []);
  return found;
}

/**
 * `labvirt dev` as a developer runs it against a real workspace: the CLI in
 * its own process, Slack's secrets in the environment (docs/slack.md), Socket
 * Mode because an app token is set. Slack is a fake Web API plus a Socket
 * Mode server on loopback; the student drives it through the socket.
 */
describe('labvirt dev with Slack secrets, in Socket Mode', () => {
  let dir: string;
  let fake: FakeSlack;
  let socket: SocketModeServer;
  let child: ChildProcess;
  let output = '';

  const waitForOutput = (pattern: RegExp, what: string) =>
    fake
      .waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`labvirt dev exited (${child.exitCode})`);
          return pattern.test(output);
        },
        what,
        180_000,
      )
      .catch((err: Error) => {
        throw new Error(`${err.message}; labvirt dev said:\n${output}`);
      });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-dev-slack-'));
    fake = await startFakeSlack();
    socket = await startSocketModeServer();
    fake.setSocketModeUrl(socket.url);
    const configFile = join(dir, 'labvirt.yaml');
    writeFileSync(configFile, stringify(fixtureDevConfig(3, { slack: { apiUrl: fake.apiUrl } })));
    child = spawnLabvirt(
      // The most talkative level the docs name: every line labvirt can write.
      [...devArgs(configFile, join(dir, 'dev')), '--log-level', 'trace'],
      { env: SECRETS, onOutput: (text) => (output += text) },
    );
    await waitForOutput(/labvirt dev: running/, 'labvirt dev to be ready');
  }, 200_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    await socket?.close();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves list, start and stop through the socket, and never prints a secret', async () => {
    expect(output).toContain('Slack secrets found; Socket Mode');
    const open = fake.calls.filter((c) => c.method === 'apps.connections.open');
    expect(open.length).toBeGreaterThanOrEqual(1);
    expect(open.every((c) => c.token === SECRETS.SLACK_APP_TOKEN)).toBe(true);
    await fake.waitFor(
      () => socket.connections.some((c) => c.readyState === c.OPEN),
      'the Socket Mode connection',
    );

    const responseUrl = fake.responseUrl();
    const list = socket.send('slash_commands', socketCommand(USER, 'list', responseUrl));
    const listAck = await fake.waitFor(() => socket.ackOf(list), 'the ack of /lab list');
    expect(listAck.payload.response_type).toBe('ephemeral');
    expect(shownText(listAck.payload)).toContain('Fixture one');

    const start = socket.send(
      'slash_commands',
      socketCommand(USER, 'start fixture-one', responseUrl),
    );
    const startAck = await fake.waitFor(() => socket.ackOf(start), 'the ack of /lab start');
    expect(shownText(startAck.payload)).toContain('Starting');
    const answer = await fake.waitFor(
      () => fake.responsePosts(responseUrl)[0],
      'the answer to /lab start',
    );
    expect(answer.body.response_type).toBe('ephemeral');

    // The DM: posted once, then edited in place until the cluster is ready.
    const ready = await fake.waitFor(
      () => {
        const m = fake.messagesTo(USER)[0];
        return m && /your cluster is ready/.test(m.text ?? '') ? m : undefined;
      },
      'the DM to show the active session',
      120_000,
    );
    expect(ready.channel).toBe(fake.dmChannelOf(USER));
    expect(fake.messagesTo(USER)).toHaveLength(1);
    expect(fake.updatesOf(ready.channel, ready.ts).length).toBeGreaterThanOrEqual(1);
    expect(fake.callsOf('chat.postMessage').every((c) => c.token === SECRETS.SLACK_BOT_TOKEN)).toBe(
      true,
    );

    const stop = socket.send('slash_commands', socketCommand(USER, 'stop', responseUrl));
    const stopAck = await fake.waitFor(() => socket.ackOf(stop), 'the ack of /lab stop');
    expect(stopAck.payload.response_type).toBe('ephemeral');
    const stopButton = buttonsOf(stopAck.payload).find((b) => b.action_id === 'lab_stop');
    expect(stopButton?.confirm).toBeDefined(); // Slack asks before the click is sent
    const click = socket.send(
      'interactive',
      blockActionPayload({
        userId: USER,
        actionId: 'lab_stop',
        value: String(stopButton.value),
        responseUrl,
      }),
    );
    await fake.waitFor(() => socket.ackOf(click), 'the ack of the Stop click');
    await fake.waitFor(
      () => /Stopped/.test(shownText(fake.message(ready.channel, ready.ts)!)),
      'the DM to show the stop',
      30_000,
    );

    // Ctrl-C: labvirt dev stops everything and exits.
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve, reject) => {
      const stuck = setTimeout(
        () => reject(new Error(`labvirt dev did not exit after Ctrl-C; it said:\n${output}`)),
        60_000,
      );
      child.once('exit', (c) => {
        clearTimeout(stuck);
        resolve(c);
      });
    });
    expect(code, output).toBe(0);
    expect(output).toMatch(/"level":20/); // the debug lines too were really written
    for (const [name, value] of Object.entries(SECRETS)) {
      expect(output.includes(value), `${name} appears in labvirt's output`).toBe(false);
    }
    // 14 s alone. The exit used to take 60 s (a teardown's wait for a change
    // kept the process up, src/kube/watch.ts), which put the test over 180 s
    // once at load 4–8. Each wait above is bounded and names what it waited
    // for; their sum on a loaded machine stays below this.
  }, 400_000);
});
