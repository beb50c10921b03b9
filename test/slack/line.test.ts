import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { startAsSlackUser } from './helpers.js';

/**
 * Students waiting for an env see their place in line move: when someone
 * ahead is served or leaves, every waiting student's status message shows
 * their new position.
 */
describe('Slack DMs of students in line', () => {
  let stack: TestStack;
  let fake: FakeSlack;

  beforeAll(async () => {
    fake = await startFakeSlack();
    stack = await startTestStack({
      slack: { botToken: 'xoxb-line-test' },
      overrides: {
        // Positions may be edited every second here (15 s by default).
        slack: { apiUrl: fake.apiUrl, linePositionEditSeconds: 1 },
        // One three-node env at a time: the others wait in line.
        flavors: { 'v1.30-3node': { minWarm: 0, maxTotal: 1 } },
      },
    });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });

  const shows = (userId: string, pattern: RegExp) =>
    fake.waitFor(
      () => fake.messagesTo(userId)[0]?.versions.some((v) => pattern.test(v.text ?? '')),
      `${userId}'s DM to show ${pattern}`,
      45_000,
    );

  it('moves each waiting student up as the line moves', async () => {
    const start = (userId: string) =>
      startAsSlackUser(stack.labvirt.service, stack.labvirt.notifier!, userId, 'fixture-three');
    const first = await start('U0L01');
    const second = await start('U0L02');
    const third = await start('U0L03');
    expect(third.queue?.position).toBe(3);
    await shows('U0L03', /#3 in line/);

    // The first is served: the others move up.
    await stack.untilSession(first.id, 'active', 45_000);
    await shows('U0L02', /#1 in line/);
    await shows('U0L03', /#2 in line/);

    // The first leaves; its env is replaced and serves the second: the third is next.
    await stack.labvirt.service.stop(first.id);
    // (The schedules are off in tests: replenish by hand until the torn-down env is replaced.)
    await stack.until(
      async () => {
        await stack.labvirt.runMaintenance('replenish');
        return (await stack.labvirt.service.status(second.id)).state === 'active';
      },
      'the second student to be served',
      60_000,
    );
    await shows('U0L03', /#1 in line/);

    // Each status message stayed one message, edited in place.
    for (const u of ['U0L01', 'U0L02', 'U0L03']) {
      expect(
        fake.messagesTo(u).filter((m) => /in line|preparing|ready/.test(m.versions[0]!.text ?? '')),
      ).toHaveLength(1);
    }
    await stack.labvirt.service.stop(second.id);
    await stack.labvirt.service.stop(third.id);
  }, 120_000);
});
