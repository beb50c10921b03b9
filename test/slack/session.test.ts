import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack, type SlackMessage } from '../helpers/fake-slack.js';
import {
  TEST_SIGNING_SECRET,
  postBlockAction,
  postSlashCommand,
  type BlockActionFields,
} from '../helpers/slack-request.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { dmCallsOf, shownText, solveLab } from './helpers.js';

/**
 * A student's whole session, as they live it in Slack: signed slash
 * commands and button clicks into Bolt's real HTTP receiver on labvirt's API
 * port, labvirt against the simulator, and what Slack is asked to show
 * recorded by a fake Slack Web API.
 */
describe('a lab session from Slack', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  let url: string;
  let clockOffsetMs = 0;
  const user = 'U0S01';

  beforeAll(async () => {
    fake = await startFakeSlack();
    stack = await startTestStack({
      now: () => Date.now() + clockOffsetMs,
      slack: { botToken: 'xoxb-session-test', signingSecret: TEST_SIGNING_SECRET },
      overrides: {
        slack: { apiUrl: fake.apiUrl },
        sessions: { warnBeforeMinutes: 20 },
      },
    });
    url = `${stack.labvirt.apiUrl}/slack/events`;
    await stack.fillPool('v1.30-1node', 1);
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });

  const command = async (text: string) => {
    const responseUrl = fake.responseUrl();
    const res = await postSlashCommand(url, { text, userId: user, responseUrl });
    expect(res.status).toBe(200);
    return { ack: res, responseUrl };
  };
  /**
   * What the student reads after a command: the ephemeral answer in the ack,
   * or (for slow subcommands, which ack at once) the one posted to response_url.
   */
  const answerTo = async (text: string, opts: { later?: boolean } = {}): Promise<string> => {
    const { ack, responseUrl } = await command(text);
    if (!opts.later) return ack.text;
    const post = await fake.waitFor(() => fake.responsePosts(responseUrl)[0], `answer to ${text}`);
    return JSON.stringify(post.body);
  };
  /** Clicks a button; resolves with the ephemeral answer when the click has one. */
  const click = async (
    fields: Omit<BlockActionFields, 'userId'>,
    opts: { answered?: boolean } = {},
  ): Promise<string> => {
    const responseUrl = fake.responseUrl();
    const res = await postBlockAction(url, { userId: user, responseUrl, ...fields });
    expect(res.status).toBe(200);
    if (!opts.answered) return '';
    const post = await fake.waitFor(
      () => fake.responsePosts(responseUrl)[0],
      `answer to ${fields.actionId}`,
    );
    return JSON.stringify(post.body);
  };
  const statusMessage = (): SlackMessage | undefined => fake.messagesTo(user)[0];
  const untilStatus = (pattern: RegExp, what: string) =>
    fake.waitFor(() => {
      const m = statusMessage();
      return m && pattern.test(shownText(m)) ? m : undefined;
    }, what);

  it('list → start → DM edited in place → check, hint, solve → extend → warning → stop', async () => {
    expect(await answerTo('list')).toContain('fixture-one');

    const started = await command('start fixture-one');
    expect(started.ack.elapsedMs).toBeLessThan(3000);
    const active = await untilStatus(/your cluster is ready/, 'the DM to show the active session');
    const sessionId = /session `(s-[a-z0-9]{10})`/.exec(shownText(active))![1]!;
    // The status message went through its states in place: one post, then edits.
    expect(active.versions.length).toBeGreaterThanOrEqual(2);
    expect(active.versions[0]!.text).toMatch(/preparing|in line/);
    // No private key in any message text: it came as a file.
    for (const c of fake.calls)
      expect(JSON.stringify(c.args)).not.toMatch(/PRIVATE KEY-----\\n[A-Za-z0-9]/);

    const failed = await answerTo('check', { later: true });
    expect(failed).toMatch(/state says FIXME/);

    const hint = await answerTo('hint');
    expect(hint).toContain('Look at /etc/fixture/state');
    await untilStatus(/1 of 2 hints used/, 'the hint count in the DM');

    await solveLab(stack.labvirt, sessionId);
    const button = { channelId: active.channel, messageTs: active.ts, value: sessionId };
    const passed = await click({ ...button, actionId: 'lab_check' }, { answered: true });
    expect(passed).toMatch(/1\/1|passed/i);
    await untilStatus(/Solved!/, 'the solved summary in the DM');

    const before = Date.parse((await stack.labvirt.service.status(sessionId)).expiresAt!);
    await click({ ...button, actionId: 'lab_extend' });
    await stack.until(
      async () => Date.parse((await stack.labvirt.service.status(sessionId)).expiresAt!) > before,
      'the extension',
    );

    // 20 minutes before the end, a warning with an Extend button, once.
    const expiresAt = Date.parse((await stack.labvirt.service.status(sessionId)).expiresAt!);
    clockOffsetMs = expiresAt - 15 * 60_000 - Date.now();
    await stack.labvirt.runMaintenance('expire');
    await stack.labvirt.runMaintenance('expire');
    const warning = await fake.waitFor(
      () => fake.messagesTo(user).find((m) => /ends in/.test(m.text ?? '')),
      'the expiry warning',
    );
    expect(shownText(warning)).toContain('lab_extend');
    clockOffsetMs = 0;

    // Stop asks first; the confirmed click stops.
    const confirm = await answerTo('stop');
    expect(confirm).toContain('lab_stop');
    expect(confirm).toContain('confirm');
    await click({ ...button, actionId: 'lab_stop' });
    await stack.untilSession(sessionId, 'ended');
    await fake.waitFor(
      () => fake.messagesTo(user).some((m) => /has ended/.test(m.text ?? '')),
      'the last DM',
    );
    const final = statusMessage()!;
    expect(shownText(final)).toMatch(/Solved!.*1 of 2 hints used/);
    expect(shownText(final)).not.toContain('lab_check');

    // One status message, edited in place: after its post, only chat.update on its channel+ts.
    const statusCalls = dmCallsOf(fake, user).filter(
      (c) => c.method === 'chat.update' || c.args.text === final.versions[0]!.text,
    );
    expect(statusCalls[0]!.method).toBe('chat.postMessage');
    for (const c of statusCalls.slice(1)) {
      expect(c).toMatchObject({
        method: 'chat.update',
        args: { channel: final.channel, ts: final.ts },
      });
    }
    expect(fake.messagesTo(user).filter((m) => /ends in/.test(m.text ?? ''))).toHaveLength(1);
    expect(fake.messagesTo(user).filter((m) => /has ended/.test(m.text ?? ''))).toHaveLength(1);
  }, 90_000);
});
