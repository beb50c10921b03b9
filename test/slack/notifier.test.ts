import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { dmCallsOf, shownText, solveLab, startAsSlackUser, statusMessageOf } from './helpers.js';

/**
 * Slack notifications of sessions driven through the sessions service (the
 * same calls the Slack and HTTP front ends make), delivered through Redis to
 * a fake Slack Web API.
 */
describe('Slack notifier', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  let clockOffsetMs = 0;

  beforeAll(async () => {
    fake = await startFakeSlack();
    stack = await startTestStack({
      now: () => Date.now() + clockOffsetMs,
      slack: { botToken: 'xoxb-test-token' },
      overrides: {
        slack: { apiUrl: fake.apiUrl },
        // Every active session is inside the warning window as soon as it starts.
        sessions: { warnBeforeMinutes: 60 },
      },
    });
    await stack.fillPool('v1.30-1node', 2);
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });
  beforeEach(async () => {
    await fake.setDown(false);
  });

  /**
   * Waits until every notification of the session has been delivered: the
   * queue is empty and the message shows the latest change, twice in a row
   * (an event's listener may still be looking up its session in between).
   */
  async function settled(sessionId: string): Promise<void> {
    const quiet = async () => {
      const counts = await stack.labvirt.notifier!.counts();
      const pending = counts.wait! + counts.active! + counts.delayed! + counts.prioritized!;
      const state = await stack.labvirt.store.slackMessageState(sessionId);
      return pending === 0 && state.rendered === state.version;
    };
    await stack.until(
      async () =>
        (await quiet()) && (await new Promise((r) => setTimeout(r, 150))) === undefined && quiet(),
      `notifications of ${sessionId} to settle`,
    );
  }

  async function warm(): Promise<void> {
    await stack.fillPool('v1.30-1node', 1);
  }

  it('edits one DM status message through a whole session, then says goodbye once', async () => {
    await warm();
    const user = 'U0001';
    const started = await startAsSlackUser(
      stack.labvirt.service,
      stack.labvirt.notifier!,
      user,
      'fixture-one',
      'whole-session',
    );
    const id = started.id;
    await stack.untilSession(id, 'active');
    const status = await fake.waitFor(() => {
      const m = statusMessageOf(fake, user);
      return m && /your cluster is ready/.test(m.text ?? '') ? m : undefined;
    }, 'the DM to show the active session');
    expect(status.channel).toBe(fake.dmChannelOf(user));
    expect(shownText(status)).toContain(id); // the connection command names the session
    expect(shownText(status)).toContain('lab_check');

    const failed = await stack.labvirt.service.check(id);
    expect(failed.passed).toBe(false);
    expect(failed.checks[0]!.messages.join('\n')).toMatch(/state says FIXME/);

    await stack.labvirt.service.hint(id);
    await settled(id);
    expect(shownText(fake.message(status.channel, status.ts)!)).toContain('1 of 2 hints used');

    await solveLab(stack.labvirt, id);
    expect((await stack.labvirt.service.check(id)).passed).toBe(true);
    await settled(id);
    expect(fake.message(status.channel, status.ts)!.text).toMatch(/solved/);

    const before = Date.parse((await stack.labvirt.service.status(id)).expiresAt!);
    const extended = await stack.labvirt.service.extend(id);
    expect(Date.parse(extended.expiresAt!)).toBeGreaterThan(before);
    await settled(id);

    await stack.labvirt.service.stop(id);
    await settled(id);
    const finalStatus = fake.message(status.channel, status.ts)!;
    // A solved session ends with its summary: time taken, hints used, points.
    expect(shownText(finalStatus)).toMatch(/Solved!.*1 of 2 hints used · 1\/1 points/);
    expect(finalStatus.text).toMatch(/solved/);
    expect(shownText(finalStatus)).not.toContain('lab_check'); // no buttons on an ended session

    const posts = fake.messagesTo(user);
    expect(posts).toHaveLength(2); // the status message, and the last DM
    expect(posts[0]!.ts).toBe(status.ts);
    expect(posts[1]!.text).toMatch(/has ended/);
    // After the first post, the status message only ever changed through chat.update.
    const calls = dmCallsOf(fake, user);
    expect(calls[0]!.method).toBe('chat.postMessage');
    const updates = calls.filter((c) => c.method === 'chat.update');
    expect(updates.length).toBeGreaterThanOrEqual(4);
    for (const u of updates)
      expect(u).toMatchObject({ args: { channel: status.channel, ts: status.ts } });
    // Never the same content twice in a row: each edit shows a change.
    const versions = status.versions.map((v) => JSON.stringify(v));
    for (let i = 1; i < versions.length; i++) expect(versions[i]).not.toBe(versions[i - 1]);
    // Slack calls for the whole session: a post, the edits, the last DM.
    expect(calls.length).toBeLessThanOrEqual(8);
  }, 60_000);

  it('sends nothing for students without a Slack identity', async () => {
    await warm();
    const before = fake.calls.length;
    const s = await stack.labvirt.service.start({ student: 'olga', labId: 'fixture-one' });
    await stack.untilSession(s.id, 'active');
    await stack.labvirt.service.stop(s.id);
    await stack.labvirt.notifier!.sessionChanged(s.id);
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.calls.length).toBe(before);
    expect((await stack.labvirt.notifier!.counts()).failed).toBe(0);
  }, 30_000);

  it("sends nothing for a session the HTTP API started, even for a student id shaped like Slack's", async () => {
    await warm();
    const user = 'U0API01';
    const before = fake.calls.length;
    const res = await fetch(`${stack.labvirt.apiUrl}/v1/sessions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${stack.apiToken}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ student: `T0001.${user}`, labId: 'fixture-one' }),
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    await stack.untilSession(id, 'active');
    await stack.labvirt.service.hint(id);
    await stack.labvirt.notifier!.sessionChanged(id);
    await stack.labvirt.service.stop(id);
    await stack.until(async () => {
      const counts = await stack.labvirt.notifier!.counts();
      return counts.wait! + counts.active! + counts.delayed! + counts.prioritized! === 0;
    }, 'the queue to drain');
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.calls.slice(before)).toEqual([]);
    expect(fake.messagesTo(user)).toHaveLength(0);
  }, 30_000);

  it('keeps sessions working while Slack is down, and delivers the latest state when it is back', async () => {
    await warm();
    const user = 'U0002';
    await fake.setDown('refused');
    const s = await startAsSlackUser(
      stack.labvirt.service,
      stack.labvirt.notifier!,
      user,
      'fixture-one',
    );
    // The session does not wait for Slack: it becomes active, and the service says so.
    await stack.untilSession(s.id, 'active');
    await new Promise((r) => setTimeout(r, 500)); // a few failed attempts
    expect(fake.messagesTo(user)).toHaveLength(0);
    await fake.setDown(false);
    // 5xx on the way back: retried too.
    fake.failNext('chat.postMessage', 2, { status: 503 });
    await settled(s.id);
    const posts = fake.messagesTo(user);
    expect(posts).toHaveLength(1);
    expect(posts[0]!.text).toMatch(/your cluster is ready/);
    // Coalesced: the states it missed while Slack was away are not replayed.
    expect(fake.updatesOf(posts[0]!.channel, posts[0]!.ts)).toHaveLength(0);
    expect(fake.calls.filter((c) => c.status === 503)).toHaveLength(2);
    await stack.labvirt.service.stop(s.id);
    await settled(s.id);
  }, 60_000);

  it('honours 429 Retry-After without losing or repeating an update', async () => {
    await warm();
    const user = 'U0003';
    const s = await startAsSlackUser(
      stack.labvirt.service,
      stack.labvirt.notifier!,
      user,
      'fixture-one',
    );
    await stack.untilSession(s.id, 'active');
    await settled(s.id);
    const [status] = fake.messagesTo(user);
    const updatesBefore = fake.updatesOf(status!.channel, status!.ts).length;

    fake.failNext('chat.update', 1, { status: 429, retryAfterSeconds: 1 });
    const limitedAt = Date.now();
    await stack.labvirt.service.hint(s.id);
    await settled(s.id);
    const updates = fake.updatesOf(status!.channel, status!.ts);
    expect(updates).toHaveLength(updatesBefore + 1); // the hint, once
    // Slack asked for a second's pause and got it.
    expect(updates.at(-1)!.at - limitedAt).toBeGreaterThanOrEqual(900);
    expect(shownText(fake.message(status!.channel, status!.ts)!)).toContain('1 of 2 hints used');
    expect((await stack.labvirt.notifier!.counts()).failed).toBe(0);
    expect((await stack.labvirt.service.status(s.id)).state).toBe('active');
    await stack.labvirt.service.stop(s.id);
    await settled(s.id);
  }, 60_000);

  it('coalesces a burst of changes into one edit showing the latest', async () => {
    await warm();
    const user = 'U0004';
    const s = await startAsSlackUser(
      stack.labvirt.service,
      stack.labvirt.notifier!,
      user,
      'fixture-one',
    );
    await stack.untilSession(s.id, 'active');
    await settled(s.id);
    const [status] = fake.messagesTo(user);
    const before = fake.updatesOf(status!.channel, status!.ts).length;
    // Slack is slow to answer for a moment: the changes pile up meanwhile.
    fake.failNext('chat.update', 1, { status: 429, retryAfterSeconds: 1 });
    await stack.labvirt.notifier!.sessionChanged(s.id);
    await new Promise((r) => setTimeout(r, 100));
    await stack.labvirt.service.hint(s.id);
    await stack.labvirt.service.hint(s.id);
    for (let i = 0; i < 5; i++) await stack.labvirt.notifier!.sessionChanged(s.id);
    await settled(s.id);
    const updates = fake.updatesOf(status!.channel, status!.ts).slice(before);
    expect(updates).toHaveLength(1);
    expect(shownText(updates[0]!.args)).toContain('2 of 2 hints used');
    await stack.labvirt.service.stop(s.id);
    await settled(s.id);
  }, 60_000);

  it('posts a new status message when the student deleted theirs, and edits that one', async () => {
    await warm();
    const user = 'U0006';
    const s = await startAsSlackUser(
      stack.labvirt.service,
      stack.labvirt.notifier!,
      user,
      'fixture-one',
    );
    await stack.untilSession(s.id, 'active');
    await settled(s.id);
    const [first] = fake.messagesTo(user);
    fake.deleteMessage(first!.channel, first!.ts);
    await stack.labvirt.service.hint(s.id);
    await settled(s.id);
    const [second] = fake.messagesTo(user);
    expect(second!.ts).not.toBe(first!.ts);
    expect(shownText(second!)).toContain('1 of 2 hints used');
    await stack.labvirt.service.hint(s.id);
    await settled(s.id);
    expect(fake.messagesTo(user)).toHaveLength(1);
    expect(fake.updatesOf(second!.channel, second!.ts)).toHaveLength(1);
    expect(shownText(fake.message(second!.channel, second!.ts)!)).toContain('2 of 2 hints used');
    await stack.labvirt.service.stop(s.id);
    await settled(s.id);
  }, 60_000);

  it('warns once before expiry with an Extend button, and says when the session expired', async () => {
    await warm();
    const user = 'U0005';
    const s = await startAsSlackUser(
      stack.labvirt.service,
      stack.labvirt.notifier!,
      user,
      'fixture-one',
    );
    const active = await stack.untilSession(s.id, 'active');
    await settled(s.id);
    await stack.labvirt.runMaintenance('expire');
    await stack.labvirt.runMaintenance('expire');
    await settled(s.id);
    const warnings = () => fake.messagesTo(user).filter((m) => /ends in/.test(m.text ?? ''));
    await fake.waitFor(() => warnings().length === 1, 'the expiry warning');
    await new Promise((r) => setTimeout(r, 300));
    expect(warnings()).toHaveLength(1);
    expect(shownText(warnings()[0]!)).toContain('lab_extend');

    // Time runs out.
    clockOffsetMs = Date.parse(active.expiresAt!) - Date.now() + 60_000;
    try {
      await stack.labvirt.runMaintenance('expire');
      await stack.untilSession(s.id, 'ended');
      await settled(s.id);
      await fake.waitFor(
        () => fake.messagesTo(user).some((m) => /has ended/.test(m.text ?? '')),
        'the last DM',
      );
      const [status] = fake.messagesTo(user);
      expect(shownText(status!)).toMatch(/expired/i);
      expect(fake.messagesTo(user).filter((m) => /has ended/.test(m.text ?? ''))).toHaveLength(1);
      expect(warnings()).toHaveLength(1);
    } finally {
      clockOffsetMs = 0;
    }
  }, 60_000);
});
