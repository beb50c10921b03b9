import { Writable } from 'node:stream';
import ssh2 from 'ssh2';
import { generateKeyPair } from '../../src/ssh/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import {
  TEST_SIGNING_SECRET,
  appHomeOpened,
  postBlockAction,
  postEvent,
  postSlashCommand,
  slashCommandBody,
  signSlackBody,
  type BlockActionFields,
  type SlashCommandFields,
} from '../helpers/slack-request.js';
import { createLogger } from '../../src/log/index.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { shownText, solveLab, statusMessageOf } from './helpers.js';

const BOT_TOKEN = 'xoxb-front-test';
const OPERATOR = 'UOPS0001';
const COMMANDS_PER_MINUTE = 16;

/**
 * The Slack front end over HTTP, as Slack drives it: signed slash commands,
 * button clicks and events posted to labvirt's API port, answers through the
 * acknowledgement and `response_url`, and the Web API calls a fake Slack
 * records — against the real service, Redis and the simulator.
 */
describe('Slack front end over HTTP', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  let events: string;
  const logLines: string[] = [];

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Slack's JSON is checked field by field
  type Json = any;

  /** Runs a slash command; returns the acknowledgement and a way to read later answers. */
  async function lab(userId: string, text: string, extra: Partial<SlashCommandFields> = {}) {
    const responseUrl = fake.responseUrl();
    const res = await postSlashCommand(events, { userId, text, responseUrl, ...extra });
    return {
      status: res.status,
      ack: res.json as Json,
      ackText: shownText((res.json as Json) ?? {}),
      later: (what: string, count = 1) =>
        fake.waitFor(
          () => fake.responsePosts(responseUrl).length >= count && fake.responsePosts(responseUrl),
          what,
          30_000,
        ),
    };
  }

  async function click(fields: BlockActionFields) {
    const responseUrl = fields.responseUrl ?? fake.responseUrl();
    const res = await postBlockAction(events, { ...fields, responseUrl });
    return {
      status: res.status,
      later: (what: string) =>
        fake.waitFor(
          () => fake.responsePosts(responseUrl).length > 0 && fake.responsePosts(responseUrl),
          what,
          30_000,
        ),
    };
  }

  const studentOf = (userId: string) => `T0001.${userId}`;

  beforeAll(async () => {
    fake = await startFakeSlack();
    stack = await startTestStack({
      // Every log line, debug included, is kept to check that no secret reaches it.
      logger: createLogger({
        level: 'debug',
        destination: new Writable({
          write(chunk, _encoding, done) {
            logLines.push(String(chunk));
            done();
          },
        }),
      }),
      slack: { botToken: BOT_TOKEN, signingSecret: TEST_SIGNING_SECRET },
      slackClientRetries: 0,
      overrides: {
        slack: {
          apiUrl: fake.apiUrl,
          operators: [OPERATOR],
          operatorGroup: 'S0PS0001',
          commandsPerMinute: COMMANDS_PER_MINUTE,
        },
        sessions: { maxPerStudent: 1 },
      },
    });
    events = `${stack.labvirt.apiUrl}/slack/events`;
    await stack.fillPool('v1.30-1node', 2);
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });

  it('lists the labs, helps, and answers unknown subcommands and labs with usage and a suggestion', async () => {
    const list = await lab('U1001', 'list');
    expect(list.status).toBe(200);
    expect(list.ack.response_type).toBe('ephemeral');
    expect(list.ackText).toContain('Fixture one');
    expect(list.ackText).toContain('fixture-three');
    expect(list.ackText).toContain('30 min');
    const starts = (list.ack.blocks as Json[]).filter(
      (b) => b.accessory?.action_id === 'lab_start',
    );
    expect(starts.map((b) => b.accessory.value)).toEqual(['fixture-one', 'fixture-three']);

    const help = await lab('U1001', 'help');
    for (const sub of ['list', 'start', 'status', 'check', 'hint', 'extend', 'stop', 'key']) {
      expect(help.ackText).toContain(`/lab ${sub}`);
    }
    const typo = await lab('U1001', 'strat fixture-one');
    expect(typo.ackText).toContain('`strat` is not a /lab command');
    expect(typo.ackText).toContain('Did you mean `/lab start`?');
    const unknownLab = await lab('U1001', 'start fixture-on');
    expect(unknownLab.ackText).toContain('There is no lab `fixture-on`');
    expect(unknownLab.ackText).toContain('/lab start fixture-one');
    expect(await stack.labvirt.service.list({ student: studentOf('U1001') })).toEqual([]);
  });

  it('runs a lab from Slack: start, DM edited to active, check fails, hint, check passes, solved, stop', async () => {
    const user = 'U2001';
    const triggerId = '111.222.start-once';
    const start = await lab(user, 'start fixture-one', { triggerId });
    expect(start.status).toBe(200);
    expect(start.ackText).toContain('Starting *Fixture one*');
    const [started] = await start.later('the start answer');
    expect(shownText(started!.body)).toMatch(/Fixture one is starting \(session s-[a-z0-9]{10}\)/);
    const [session] = await stack.labvirt.service.list({ student: studentOf(user) });
    const id = session!.id;

    // The same command delivered again (same trigger id) is the same session.
    const again = await lab(user, 'start fixture-one', { triggerId });
    expect(shownText((await again.later('the repeated start answer'))[0]!.body)).toContain(id);
    expect(await stack.labvirt.service.list({ student: studentOf(user) })).toHaveLength(1);

    // The private key comes once, as a file in the DM, never in a message.
    const file = await fake.waitFor(
      () => fake.files().find((f) => f.channel === fake.dmChannelOf(user)),
      'the key file',
    );
    expect(file.filename).toBe(`labvirt-${id}.key`);
    expect(file.content).toMatch(/BEGIN OPENSSH PRIVATE KEY/);
    const everyMessage = fake.calls
      .filter((c) => c.method.startsWith('chat.'))
      .map((c) => JSON.stringify(c.args));
    expect(everyMessage.join('\n')).not.toContain('PRIVATE KEY');

    // One DM status message, edited until it shows the ready cluster.
    await stack.untilSession(id, 'active');
    const dm = await fake.waitFor(() => {
      const m = statusMessageOf(fake, user);
      return m && shownText(m).includes('Your cluster is ready') && m;
    }, 'the DM to show the active session');
    expect(fake.messagesTo(user).filter((m) => m.blocks && shownText(m).includes(id))).toHaveLength(
      1,
    );
    expect(shownText(dm)).toContain(`ssh -i labvirt-${id}.key`);
    expect(shownText(dm)).toContain('left (until');
    const buttons = (dm.blocks as Json[]).find((b) => b.type === 'actions').elements as Json[];
    expect(buttons.map((b) => b.action_id)).toEqual([
      'lab_check',
      'lab_hint',
      'lab_extend',
      'lab_stop',
    ]);
    expect(buttons.find((b) => b.action_id === 'lab_stop').confirm.title.text).toBe(
      'Stop this lab?',
    );

    // Check (command): it fails, with the check's FAIL line.
    const check = await lab(user, 'check');
    expect(check.ackText).toContain('Checking your work');
    const [failed] = await check.later('the check result');
    expect(shownText(failed!.body)).toContain('Not yet');
    expect(shownText(failed!.body)).toContain('FAIL: /etc/fixture/state says FIXME');
    expect(shownText(failed!.body)).toContain('*fixed* (0 points)');

    // Hint (button on the DM message).
    const hint = await click({
      userId: user,
      actionId: 'lab_hint',
      value: id,
      channelId: dm.channel,
      messageTs: dm.ts,
    });
    expect(hint.status).toBe(200);
    const [hinted] = await hint.later('the hint');
    expect(shownText(hinted!.body)).toContain('Hint 1 of 2');
    expect(shownText(hinted!.body)).toContain('Look at /etc/fixture/state.');
    expect(shownText(hinted!.body)).toContain('1 hint left');

    // The student fixes it; Check (button) passes and the DM says solved.
    await solveLab(stack.labvirt, id);
    const passed = await click({
      userId: user,
      actionId: 'lab_check',
      value: id,
      channelId: dm.channel,
      messageTs: dm.ts,
    });
    expect(shownText((await passed.later('the passing check'))[0]!.body)).toContain(
      'All checks pass',
    );
    const solved = await stack.labvirt.service.status(id);
    expect(solved).toMatchObject({ score: 1, maxScore: 1, hintsUsed: 1 });
    expect(solved.solvedAt).toBeDefined();
    await fake.waitFor(
      () => shownText(statusMessageOf(fake, user)!).includes('Solved!'),
      'the DM to show solved',
    );

    // Extend (command), then stop: the command asks, the confirmed button stops.
    // `extend 60` is two steps of sessions.extendMinutes (30); the maximum stops it.
    const before = Date.parse(solved.expiresAt!);
    const extend = await lab(user, 'extend 60');
    expect(extend.ackText).toContain('Extended');
    const extended = Date.parse((await stack.labvirt.service.status(id)).expiresAt!);
    expect(extended - before).toBe(60 * 60_000);
    expect((await lab(user, 'extend 5000')).ackText).toContain('whole number from 1');
    expect((await lab(user, 'extend 240')).ackText).toContain('Extended');
    expect((await lab(user, 'extend')).ackText).toContain('sessions last at most');
    const stop = await lab(user, 'stop');
    const confirmButton = (stop.ack.blocks as Json[]).find((b) => b.type === 'actions').elements[0];
    expect(confirmButton).toMatchObject({ action_id: 'lab_stop', value: id, style: 'danger' });
    expect(confirmButton.confirm.confirm.text).toBe('Stop');
    expect((await stack.labvirt.service.status(id)).state).toBe('active');
    await click({ userId: user, actionId: 'lab_stop', value: id });
    await stack.untilSession(id, 'ended');
    const final = await fake.waitFor(() => {
      const m = statusMessageOf(fake, user)!;
      return !shownText(m).includes('lab_stop') && m;
    }, 'the DM to show the end');
    expect(shownText(final)).toContain('Solved!');
    expect(shownText(final)).toContain('1 of 2 hints used');
    expect(shownText(final)).toContain('1/1 points');
  }, 90_000);

  it('makes one session of one command delivered five times at once (retries, replicas)', async () => {
    const user = 'U3101';
    const now = Math.floor(Date.now() / 1000);
    const urls = [0, 1, 2, 3, 4].map(() => fake.responseUrl());
    // The same command (same trigger id), each delivery signed anew as Slack does.
    const answers = await Promise.all(
      urls.map((responseUrl, i) =>
        postSlashCommand(
          events,
          { userId: user, text: 'start fixture-one', triggerId: '999.888.same', responseUrl },
          { timestamp: now - i },
        ),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    const later = await Promise.all(
      urls.map((url) => fake.waitFor(() => fake.responsePosts(url)[0], 'an answer')),
    );
    const sessions = await stack.labvirt.service.list({ student: studentOf(user) });
    expect(sessions).toHaveLength(1);
    // Every delivery is answered with that one session (not "you already have one").
    for (const post of later) expect(shownText(post.body)).toContain(sessions[0]!.id);
    expect(fake.files().filter((f) => f.channel === fake.dmChannelOf(user))).toHaveLength(1);
    await stack.labvirt.service.stop(sessions[0]!.id);
  }, 60_000);

  it('starts one session from a Home Start button clicked twice, and refreshes the Home tab', async () => {
    const user = 'U3001';
    const opened = await postEvent(events, appHomeOpened(user));
    expect(opened.status).toBe(200);
    const home = await fake.waitFor(
      () => fake.callsOf('views.publish').find((c) => c.args.user_id === user),
      'the Home tab',
    );
    const view = home.args.view as Json;
    expect(shownText(view)).toContain('No lab running');
    expect(shownText(view)).toContain('Fixture one');
    expect(shownText(view)).not.toContain('Operator');
    const publishes = () => fake.callsOf('views.publish').filter((c) => c.args.user_id === user);
    const before = publishes().length;
    const clicks = await Promise.all(
      [1, 2].map(() =>
        postBlockAction(events, {
          userId: user,
          actionId: 'lab_start',
          value: 'fixture-one',
          container: 'home',
        }),
      ),
    );
    expect(clicks.map((c) => c.status)).toEqual([200, 200]);
    await fake.waitFor(() => publishes().length > before, 'the Home tab to be refreshed');
    const sessions = await stack.labvirt.service.list({ student: studentOf(user) });
    expect(sessions).toHaveLength(1);
    const refreshed = publishes().at(-1)!.args.view as Json;
    expect(shownText(refreshed)).toContain(sessions[0]!.id);
    await stack.labvirt.service.stop(sessions[0]!.id);
  }, 60_000);

  it('shows operators the pools on Home and /lab pool; refuses others', async () => {
    await postEvent(events, appHomeOpened(OPERATOR));
    const home = await fake.waitFor(
      () => fake.callsOf('views.publish').find((c) => c.args.user_id === OPERATOR),
      'the operator Home tab',
    );
    expect(shownText(home.args.view as Json)).toContain('Operator: pools');
    expect(shownText(home.args.view as Json)).toMatch(/v1\.30-1node\* — \d+ warm/);
    stack.labvirt.events.emit({
      type: 'env.failed',
      envId: 'q1w2e3r4',
      flavor: 'v1.30-1node',
      attempt: 2,
      willRetry: false,
      reason: 'VM control-plane failed to boot',
    });
    const pool = await stack.until(async () => {
      const answer = await lab(OPERATOR, 'pool');
      return answer.ackText.includes('q1w2e3r4') && answer;
    }, 'the failure in /lab pool');
    expect(pool.ackText).toContain('Operator: pools');
    expect(pool.ackText).toContain('giving up: VM control-plane failed to boot');
    fake.setUsergroupMembers('S0PS0001', ['UGRP0001']);
    expect((await lab('UGRP0001', 'pool')).ackText).toContain('Operator: pools');
    const refused = await lab('U4001', 'pool');
    expect(refused.ackText).toContain('Only labvirt operators can see the pool');
    expect(refused.ackText).not.toContain('warm');
  });

  it("refuses to act on another student's session", async () => {
    const owner = 'U5001';
    const start = await lab(owner, 'start fixture-one');
    await start.later('the start');
    const [session] = await stack.labvirt.service.list({ student: studentOf(owner) });
    for (const text of [`stop ${session!.id}`, `status ${session!.id}`, `hint ${session!.id}`]) {
      const other = await lab('U5002', text);
      expect(other.ackText).toContain('belongs to another student');
    }
    const clicked = await click({ userId: 'U5002', actionId: 'lab_stop', value: session!.id });
    expect(shownText((await clicked.later('the refusal'))[0]!.body)).toContain(
      'belongs to another student',
    );
    expect((await stack.labvirt.service.status(session!.id)).state).not.toBe('ended');
    await stack.labvirt.service.stop(session!.id);
  }, 60_000);

  it('registers a student key (shown as a fingerprint), then starts without sending a key', async () => {
    const user = 'U6001';
    // ssh2's own generator now and then makes a key it cannot parse (src/ssh/keys.ts).
    const pair = generateKeyPair();
    const bad = await lab(user, 'key -----BEGIN OPENSSH PRIVATE KEY----- abc');
    expect(bad.ackText).toContain('not an OpenSSH public key');
    const registered = await lab(user, `key ${pair.public} me@laptop`);
    expect(registered.ackText).toMatch(/Key registered:\* `SHA256:[A-Za-z0-9+/]{43}`/);
    const shown = await lab(user, 'key');
    expect(shown.ackText).toContain(registered.ackText.match(/SHA256:[A-Za-z0-9+/]{43}/)![0]);

    const filesBefore = fake.files().length;
    const start = await lab(user, 'start fixture-one');
    await start.later('the start');
    const [session] = await stack.labvirt.service.list({ student: studentOf(user) });
    await stack.untilSession(session!.id, 'active');
    expect(fake.files().length).toBe(filesBefore);

    // The student's own key opens their session on the gateway.
    const output = await new Promise<string>((resolve, reject) => {
      const client = new ssh2.Client();
      client
        .on('ready', () => {
          client.exec('cat /etc/fixture/state 2>/dev/null || echo none', (err, channel) => {
            if (err) return reject(err);
            let out = '';
            channel.on('data', (d: Buffer) => (out += d.toString()));
            channel.on('close', () => {
              client.end();
              resolve(out);
            });
          });
        })
        .on('error', reject)
        .connect({
          host: '127.0.0.1',
          port: stack.labvirt.gatewayPort!,
          username: session!.id,
          privateKey: pair.private,
        });
    });
    expect(output.length).toBeGreaterThan(0);
    await stack.labvirt.service.stop(session!.id);
  }, 60_000);

  it('refuses bad signatures, stale and future timestamps, and replays', async () => {
    const body = slashCommandBody({ userId: 'U7001', text: 'help' });
    const post = (headers: Record<string, string>) =>
      fetch(events, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
      });
    const now = Math.floor(Date.now() / 1000);
    expect((await post(signSlackBody(body, { secret: 'not-the-secret' }))).status).toBe(401);
    expect((await post(signSlackBody(body, { timestamp: now - 6 * 60 }))).status).toBe(401);
    const future = await post(signSlackBody(body, { timestamp: now + 6 * 60 }));
    expect(future.status).toBe(401);
    expect(await future.text()).toContain('future');
    expect((await post({})).status).toBe(401);
    const headers = signSlackBody(body, { timestamp: now });
    const first = await post(headers);
    expect(first.status).toBe(200);
    const replay = await post(headers);
    expect(replay.status).toBe(401);
    expect(await replay.text()).toContain('replayed');
    // A timestamp slightly ahead (clock skew) is still fine.
    expect((await post(signSlackBody(body, { timestamp: now + 60 }))).status).toBe(200);
    // Bolt's check reads only up to a second `=`: the same signature dressed
    // up differently is still the same request, refused as a replay would be.
    const dressed = await post({
      ...headers,
      'x-slack-signature': `${headers['x-slack-signature']}=again`,
    });
    expect(dressed.status).toBe(401);
    const upper = await post({
      ...headers,
      'x-slack-signature': headers['x-slack-signature']!.toUpperCase(),
    });
    expect(upper.status).toBe(401);
  });

  it("answers Slack's unsigned SSL check, and never runs what is smuggled into one", async () => {
    const user = 'U7101';
    const smuggled = [
      `ssl_check=1&${slashCommandBody({ userId: user, text: 'start fixture-one' })}`,
      `ssl_check=1&payload=${encodeURIComponent(JSON.stringify({ type: 'block_actions', user: { id: user, team_id: 'T0001' }, team: { id: 'T0001' }, actions: [{ action_id: 'lab_stop', value: 'x' }] }))}`,
    ];
    for (const body of smuggled) {
      const res = await fetch(events, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('');
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(await stack.labvirt.service.list({ student: studentOf(user) })).toHaveLength(0);
    expect(fake.calls.some((c) => JSON.stringify(c.args).includes(user))).toBe(false);
  });

  it('refuses a body larger than Slack ever sends, and still serves the next request', async () => {
    const big = `text=${'x'.repeat(300 * 1024)}`;
    const res = await fetch(events, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: big,
    }).catch(() => undefined);
    // The answer is 413 (or, if the client was still sending, a closed connection).
    if (res) expect(res.status).toBe(413);
    expect((await lab('U7201', 'help')).ackText).toContain('/lab start');
  });

  it('limits commands per student per minute, across replicas (in Redis)', async () => {
    const answers = [];
    for (let i = 0; i <= COMMANDS_PER_MINUTE; i++) answers.push(await lab('U8001', 'help'));
    const allowed = answers.slice(0, COMMANDS_PER_MINUTE);
    expect(allowed.every((a) => a.ackText.includes('/lab start'))).toBe(true);
    expect(answers[COMMANDS_PER_MINUTE]!.ackText).toContain(
      `Slow down: at most ${COMMANDS_PER_MINUTE} commands a minute`,
    );
    // Another student is not affected.
    expect((await lab('U8002', 'help')).ackText).toContain('/lab start');
  });

  it('puts a start in line when no cluster is warm, and keeps workspaces apart', async () => {
    // fixture-three's flavor keeps no warm clusters: the student waits in line.
    const inOrg = await lab('U9001', 'start fixture-three', { enterpriseId: 'E0001' });
    expect(inOrg.ackText).toContain('Starting');
    const [answer] = await inOrg.later('the start');
    expect(shownText(answer!.body)).toContain('you are #1 in line');
    const sessions = await stack.labvirt.service.list({ student: 'E0001.U9001' });
    expect(sessions).toHaveLength(1);
    expect(await stack.labvirt.service.list({ student: 'T0001.U9001' })).toEqual([]);
    const first = await fake.waitFor(() => statusMessageOf(fake, 'U9001'), 'the DM');
    expect(shownText(first.versions[0]!)).toMatch(/you are \*#1\* in line/);
    await stack.labvirt.service.stop(sessions[0]!.id);
  }, 60_000);

  it('keeps working when Slack is unreachable: the start is acknowledged and the session runs', async () => {
    const user = 'U9101';
    const authTests = fake.calls.filter((c) => c.method === 'auth.test').length;
    await fake.setDown('refused');
    try {
      const start = await lab(user, 'start fixture-one');
      expect(start.status).toBe(200);
      expect(start.ackText).toContain('Starting');
      const [session] = await stack.until(async () => {
        const live = await stack.labvirt.service.list({ student: studentOf(user) });
        return live.length > 0 && live;
      }, 'the session');
      // The API still shows the truth while Slack is away.
      const active = await stack.untilSession(session!.id, 'active');
      expect(active.connection?.command).toContain(session!.id);
      // Bolt never had to ask Slack who the bot is.
      expect(fake.calls.filter((c) => c.method === 'auth.test').length).toBe(authTests);
    } finally {
      await fake.setDown(false);
    }
    const [session] = await stack.labvirt.service.list({ student: studentOf(user) });
    await stack.labvirt.service.stop(session!.id);
  }, 60_000);

  it('never logs a secret: tokens, the signing secret, private keys, signatures', () => {
    const logs = logLines.join('');
    expect(logLines.length).toBeGreaterThan(10);
    expect(logs).not.toContain(BOT_TOKEN);
    expect(logs).not.toContain(TEST_SIGNING_SECRET);
    expect(logs).not.toContain('PRIVATE KEY');
    expect(logs).not.toMatch(/v0=[0-9a-f]{64}/);
  });

  it('acknowledges a class starting at once, then starts every one of them with its own answer', async () => {
    // More students than the starts a replica runs at once after their
    // acknowledgement (16): the rest wait their turn, and none is lost. Last
    // in this file: the pool grows to its maximum and is torn down after.
    const users = Array.from({ length: 24 }, (_, i) => `U95${String(i).padStart(2, '0')}`);
    const starts = await Promise.all(users.map((u) => lab(u, 'start fixture-one')));
    expect(starts.map((s) => s.status)).toEqual(users.map(() => 200));
    for (const s of starts) expect(s.ackText).toContain('Starting');
    const answers = await Promise.all(starts.map((s) => s.later('the answer to a start')));
    const ids = new Set<string>();
    for (const [i, user] of users.entries()) {
      const sessions = await stack.labvirt.service.list({ student: studentOf(user) });
      expect(sessions).toHaveLength(1);
      ids.add(sessions[0]!.id);
      expect(shownText(answers[i]![0]!.body)).toMatch(new RegExp(`${sessions[0]!.id}|in line`));
    }
    expect(ids.size).toBe(users.length);
    await Promise.all([...ids].map((id) => stack.labvirt.service.stop(id)));
  }, 120_000);
});
