import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/index.js';
import { startNotifier, type Notifier, type NotifierOptions } from '../../src/slack/index.js';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { shownText, startAsSlackUser } from './helpers.js';

const ACTIVE = /your cluster is ready/;

/**
 * The first post of a student's DM status message is made once, whatever
 * happens to the run that makes it: a second run while its answer is out
 * (the first run's hold on the session lapsed: a stalled replica, or two
 * replicas), a post Slack refused, a post whose answer never came back.
 * Only the last may cost a search of the DM; none makes a second message.
 */
describe('Slack status message: the first post', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  let redis: Redis;
  const notifiers: Notifier[] = [];

  beforeAll(async () => {
    fake = await startFakeSlack();
    // No Slack secrets: the stack's own notifier does not exist; each test
    // starts the delivering notifiers it needs, as replicas would.
    stack = await startTestStack({ overrides: { slack: { apiUrl: fake.apiUrl } } });
    redis = new Redis(stack.redis.url);
  }, 90_000);
  afterEach(async () => {
    for (const n of notifiers.splice(0)) await n.close();
    fake.setAnswerDelay('chat.postMessage', 0);
  });
  afterAll(async () => {
    redis?.disconnect();
    await stack?.stop();
    await fake?.close();
  });

  const deliveringNotifier = async (options: Partial<NotifierOptions> = {}) => {
    const u = new URL(stack.redis.url);
    const notifier = await startNotifier({
      connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null },
      prefix: `${stack.labvirt.context.config.redis.prefix}-jobs`,
      store: stack.labvirt.store,
      service: stack.labvirt.service,
      events: stack.labvirt.events,
      log: silentLogger(),
      slack: { botToken: 'xoxb-first-post', apiUrl: fake.apiUrl },
      retry: { baseDelayMs: 100, maxDelayMs: 500 },
      ...options,
    });
    notifiers.push(notifier);
    return notifier;
  };

  const startFromSlack = async (notifier: Notifier, user: string) => {
    // The file's first env boots here: at load 40 that took more than 30 s.
    await stack.fillPool('v1.30-1node', 1, { timeoutMs: 60_000 });
    return startAsSlackUser(stack.labvirt.service, notifier, user, 'fixture-one');
  };

  /** Every Slack call made for one student's DM (DM channel or user id). */
  const callsFor = (user: string) =>
    fake.calls.filter((c) =>
      [c.args.channel, c.args.users].some((v) => v === user || v === fake.dmChannelOf(user)),
    );

  /** Waits until the queue is empty and the status message shows the session as active. */
  const untilShownActive = async (notifier: Notifier, user: string) => {
    await stack.until(async () => {
      const c = await notifier.counts();
      const idle = c.wait! + c.active! + c.delayed! + c.prioritized! === 0;
      const m = fake.messagesTo(user)[0];
      return idle && m && ACTIVE.test(m.text ?? '') ? m : undefined;
    }, `${user}'s DM to show the active session`);
  };

  /** Stops the session and waits for its goodbye, so that no job of it outlives the test. */
  const stopAndDrain = async (notifier: Notifier, sessionId: string, user: string) => {
    await stack.labvirt.service.stop(sessionId);
    await stack.until(async () => {
      const c = await notifier.counts();
      const idle = c.wait! + c.active! + c.delayed! + c.prioritized! === 0;
      return idle && fake.messagesTo(user).some((m) => /has ended/.test(m.text ?? ''));
    }, `${user}'s goodbye`);
  };

  it('a second run while the first post is unanswered waits for it: one message, no search', async () => {
    const a = await deliveringNotifier();
    const b = await deliveringNotifier();
    const user = 'U0FP01';
    // Slack takes the post at once but its answer is slow to come back.
    fake.setAnswerDelay('chat.postMessage', 3000);
    const s = await startFromSlack(a, user);
    await stack.until(async () => fake.messagesTo(user).length === 1, 'the post to reach Slack');
    // The posting run stalls past its hold on the session: the lock lapses
    // (as after lockMs without renewal), and a change arrives meanwhile.
    await redis.del(stack.labvirt.store.keys.slackLock(s.id));
    await b.sessionChanged(s.id);
    await untilShownActive(a, user);
    await new Promise((r) => setTimeout(r, 300)); // nothing more arrives late

    const messages = fake.messagesTo(user);
    expect(messages).toHaveLength(1);
    const calls = callsFor(user);
    expect(calls.filter((c) => c.method === 'chat.postMessage')).toHaveLength(1);
    expect(calls.filter((c) => c.method.startsWith('conversations.'))).toHaveLength(0);
    // Every later state reached the one message by edits.
    const updates = fake.updatesOf(messages[0]!.channel, messages[0]!.ts);
    expect(calls).toHaveLength(1 + updates.length);
    expect(shownText(fake.message(messages[0]!.channel, messages[0]!.ts)!)).toMatch(ACTIVE);
    const state = await stack.labvirt.store.slackMessageState(s.id);
    expect(state).toMatchObject({ ts: messages[0]!.ts, postingSince: undefined });
    await stopAndDrain(a, s.id, user);
  }, 90_000);

  it('a post Slack refused with 429 is posted again without searching the DM', async () => {
    const n = await deliveringNotifier();
    const user = 'U0FP02';
    fake.failNext('chat.postMessage', 1, { status: 429, retryAfterSeconds: 1 });
    const s = await startFromSlack(n, user);
    await untilShownActive(n, user);

    expect(fake.messagesTo(user)).toHaveLength(1);
    const calls = callsFor(user);
    expect(calls.filter((c) => c.method === 'chat.postMessage').map((c) => c.status)).toEqual([
      429, 200,
    ]);
    expect(calls.filter((c) => c.method.startsWith('conversations.'))).toHaveLength(0);
    await stopAndDrain(n, s.id, user);
  }, 90_000);

  it('a post whose answer never came back is found in the DM and edited, never posted twice', async () => {
    // Every call has this timeout, the search's too: at 700 ms, at load 40,
    // the search's answer came after the client had given up, and the retry
    // rightly searched again. 3 s is several times a call's answer there.
    const n = await deliveringNotifier({ callTimeoutMs: 3000 });
    const user = 'U0FP03';
    // Slack takes the post but answers after the client has given up (3 s
    // after, so that a late timer does not let the answer in first).
    fake.setAnswerDelay('chat.postMessage', 6000);
    const s = await startFromSlack(n, user);
    await stack.until(
      async () => callsFor(user).some((c) => c.method === 'chat.postMessage' && c.status === 0),
      'the post to go unanswered',
    );
    fake.setAnswerDelay('chat.postMessage', 0);
    await untilShownActive(n, user);
    await new Promise((r) => setTimeout(r, 300));

    const messages = fake.messagesTo(user);
    expect(messages).toHaveLength(1);
    const calls = callsFor(user);
    expect(calls.filter((c) => c.method === 'chat.postMessage')).toHaveLength(1);
    expect(
      calls.filter((c) => c.method === 'conversations.history'),
      JSON.stringify(calls.map((c) => [c.method, c.status, c.at - calls[0]!.at])),
    ).toHaveLength(1);
    expect(fake.updatesOf(messages[0]!.channel, messages[0]!.ts).length).toBeGreaterThanOrEqual(1);
    expect(shownText(fake.message(messages[0]!.channel, messages[0]!.ts)!)).toMatch(ACTIVE);
    await stopAndDrain(n, s.id, user);
  }, 90_000);
});
