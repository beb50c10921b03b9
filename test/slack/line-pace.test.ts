import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/events/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startNotifier, type Notifier } from '../../src/slack/index.js';
import { startFakeSlack, type FakeSlack, type SlackMessage } from '../helpers/fake-slack.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { startAsSlackUser } from './helpers.js';

/** `slack.linePositionEditSeconds` here: longer than the line lasts, so only state changes may follow the first post. */
const INTERVAL_S = 20;
const STUDENTS = 8;
const LEAVING = 2;

/** Where in a session's life a version of its status message is. */
function stageOf(text: string | undefined): number {
  if (/in line/.test(text ?? '')) return 0;
  if (/preparing/.test(text ?? '')) return 1;
  if (/your cluster is ready/.test(text ?? '')) return 2;
  return 3; // ended (cancelled, stopped, …)
}

/**
 * A line of waiting students moves many places in a few seconds (students
 * ahead leave, then a burst of envs serves everyone): each student's DM
 * follows the line at most once per interval, while every change of state
 * (in line → preparing → ready, or cancelled) goes out at once, the final
 * one last. Two replicas deliver.
 */
describe('Slack DMs follow the line at a bounded pace', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  let replicaB: Notifier;

  beforeAll(async () => {
    fake = await startFakeSlack();
    stack = await startTestStack({
      slack: { botToken: 'xoxb-line-pace' },
      overrides: {
        slack: { apiUrl: fake.apiUrl, linePositionEditSeconds: INTERVAL_S },
        // No warm env: everyone who starts waits in line.
        flavors: { 'v1.30-1node': { minWarm: 0, maxTotal: STUDENTS - LEAVING } },
      },
    });
    // A second replica on the same Redis that delivers too (it sees no
    // events of its own: replica A's changes reach it through the queue).
    const u = new URL(stack.redis.url);
    replicaB = await startNotifier({
      connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null },
      prefix: `${stack.labvirt.context.config.redis.prefix}-jobs`,
      store: stack.labvirt.store,
      service: stack.labvirt.service,
      events: new EventBus(),
      log: silentLogger(),
      slack: { botToken: 'xoxb-line-pace', apiUrl: fake.apiUrl },
      linePositionEditMs: INTERVAL_S * 1000,
    });
  }, 90_000);
  afterAll(async () => {
    await replicaB?.close();
    await stack?.stop();
    await fake?.close();
  });

  it('edits a waiting student at most once per interval for the line, and at once for a state change', async () => {
    const users = Array.from(
      { length: STUDENTS },
      (_, i) => `U0P${String(i + 1).padStart(2, '0')}`,
    );
    const sessions = [];
    for (const user of users) {
      sessions.push(
        await startAsSlackUser(stack.labvirt.service, stack.labvirt.notifier!, user, 'fixture-one'),
      );
    }
    const status = (user: string): SlackMessage | undefined => fake.messagesTo(user)[0];
    await stack.until(
      async () => users.every((u, i) => status(u)?.text?.includes(`#${i + 1} in line`)),
      'every DM to show its place in line',
    );

    const readyAt = new Map<string, number>();
    const off = stack.labvirt.events.on('session.ready', (e) => {
      readyAt.set(e.sessionId, Date.now());
    });
    // The first in line leave, one after the other: everyone behind moves up twice.
    for (const s of sessions.slice(0, LEAVING)) await stack.labvirt.service.stop(s.id);
    // Then envs for everyone left, in one burst: each claim moves the rest.
    await stack.labvirt.runMaintenance('replenish');
    const served = sessions.slice(LEAVING);
    try {
      for (const s of served) await stack.untilSession(s.id, 'active', 60_000);
      await stack.until(
        async () =>
          served.every((_, i) =>
            /your cluster is ready/.test(status(users[i + LEAVING]!)?.text ?? ''),
          ),
        'every served DM to show the ready cluster',
        30_000,
      );
    } finally {
      off();
    }
    await stack.until(
      async () => users.slice(0, LEAVING).every((u) => stageOf(status(u)?.text) === 3),
      'the leavers to see their session ended',
    );

    for (const [i, user] of users.entries()) {
      const { versions } = status(user)!;
      // One status message, edited in place (besides the goodbye of a session that ended).
      expect(fake.messagesTo(user).filter((m) => !/has ended/.test(m.text ?? ''))).toHaveLength(1);
      // Stages never go backwards, and the last one shown is the final state.
      const stages = versions.map((v) => stageOf(v.text));
      expect(stages).toEqual([...stages].sort((a, b) => a - b));
      expect(stages.at(-1)).toBe(i < LEAVING ? 3 : 2);
      // The line is followed at most once per interval.
      const inLine = versions.filter((v) => stageOf(v.text) === 0);
      const elapsedMs = inLine.at(-1)!.at - versions[0]!.at;
      expect(
        inLine.length,
        `${user}: ${inLine.map((v) => v.text).join(' / ')}`,
      ).toBeLessThanOrEqual(Math.floor(elapsedMs / (INTERVAL_S * 1000)) + 1);
    }
    // The served students moved many places, yet their state changes did not
    // wait for the line's interval: the ready DM came well before it.
    for (const [i, s] of served.entries()) {
      const ready = status(users[i + LEAVING]!)!.versions.find((v) => stageOf(v.text) === 2)!;
      expect(ready.at - readyAt.get(s.id)!).toBeLessThan(INTERVAL_S * 1000);
    }
  }, 150_000);
});
