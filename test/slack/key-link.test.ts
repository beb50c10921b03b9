import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { TEST_SIGNING_SECRET, postSlashCommand } from '../helpers/slack-request.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { shownText } from './helpers.js';

const PUBLIC_URL = 'https://labvirt.example.test/';

/**
 * With `api.publicUrl`, a private key leaves as a one-time link on labvirt's
 * API instead of a file in Slack; with `slack.port`, Slack's requests are
 * served on their own port, not the API's.
 */
describe('Slack: one-time key links and a port of its own', () => {
  let stack: TestStack;
  let fake: FakeSlack;

  beforeAll(async () => {
    fake = await startFakeSlack();
    stack = await startTestStack({
      slack: { botToken: 'xoxb-link-test', signingSecret: TEST_SIGNING_SECRET },
      overrides: {
        api: { publicUrl: PUBLIC_URL },
        slack: { apiUrl: fake.apiUrl, port: 0, keyLinkMinutes: 1 },
      },
    });
    await stack.fillPool('v1.30-1node', 1);
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });

  it('serves /slack/events on slack.port only', async () => {
    const slackUrl = stack.labvirt.slackUrl!;
    expect(slackUrl).not.toBe(stack.labvirt.apiUrl);
    const onApi = await postSlashCommand(`${stack.labvirt.apiUrl}/slack/events`, {
      userId: 'U1001',
      text: 'help',
    });
    expect(onApi.status).toBe(404);
    const onOwn = await postSlashCommand(`${slackUrl}/slack/events`, {
      userId: 'U1001',
      text: 'help',
    });
    expect(onOwn.status).toBe(200);
    expect(onOwn.text).toContain('/lab start');
  });

  it('sends the private key as a link that works once', async () => {
    const responseUrl = fake.responseUrl();
    const start = await postSlashCommand(`${stack.labvirt.slackUrl}/slack/events`, {
      userId: 'U2001',
      text: 'start fixture-one',
      responseUrl,
    });
    expect(start.status).toBe(200);
    const linkMessage = await fake.waitFor(
      () =>
        fake.messagesTo('U2001').find((m) => shownText(m).includes('Download your private key')),
      'the key link message',
    );
    expect(fake.files()).toEqual([]);
    const link = shownText(linkMessage).match(
      /https:\/\/labvirt\.example\.test\/keys\/[A-Za-z0-9_-]+/,
    )![0];
    expect(shownText(linkMessage)).not.toContain('PRIVATE KEY');
    // The link is on the public URL; here the API is reached on loopback.
    const local = link.replace('https://labvirt.example.test', stack.labvirt.apiUrl!);
    const first = await fetch(local);
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('no-store');
    expect(first.headers.get('content-disposition')).toContain('attachment');
    expect(await first.text()).toMatch(/BEGIN OPENSSH PRIVATE KEY/);
    const second = await fetch(local);
    expect(second.status).toBe(410);
    const unknown = await fetch(`${stack.labvirt.apiUrl}/keys/${'x'.repeat(32)}`);
    expect(unknown.status).toBe(404);
    const [session] = await stack.labvirt.service.list({ student: 'T0001.U2001' });
    await stack.labvirt.service.stop(session!.id);
  }, 60_000);

  it('forgets a key link that was not used in time', async () => {
    const token = 'expiring-link-0123456789abcdef';
    await stack.labvirt.store.putKeyLink(token, 'not a real key', 1);
    await new Promise((r) => setTimeout(r, 1_500));
    const res = await fetch(`${stack.labvirt.apiUrl}/keys/${token}`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('expired');
  });
});
