import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';

// The fake is what every Slack test trusts; these pin that it behaves like
// Slack where our code depends on it.
describe('fake Slack Web API', () => {
  let fake: FakeSlack;
  let client: webApi.WebClient;
  beforeAll(async () => {
    fake = await startFakeSlack();
    client = new webApi.WebClient('xoxb-test', {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
    });
  });
  beforeEach(async () => {
    await fake.setDown(false);
    fake.reset();
  });
  afterAll(() => fake.close());

  it('posts a DM to a user id, answers its D channel, and edits it only by that channel', async () => {
    const posted = await client.chat.postMessage({ channel: 'U0042', text: 'queued' });
    expect(posted.channel).toBe(fake.dmChannelOf('U0042'));
    const ts = posted.ts!;
    await client.chat.update({ channel: posted.channel!, ts, text: 'active' });
    await expect(client.chat.update({ channel: 'U0042', ts, text: 'x' })).rejects.toThrow(
      /channel_not_found/,
    );
    expect(fake.messagesTo('U0042')).toHaveLength(1);
    expect(fake.message(posted.channel!, ts)?.text).toBe('active');
    expect(fake.updatesOf(posted.channel!, ts).map((c) => c.args.text)).toEqual(['active']);
  });

  it('parses blocks and records the token', async () => {
    await client.chat.postMessage({
      channel: 'U1',
      text: 'fallback',
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*hi*' } }],
    });
    const [call] = fake.callsOf('chat.postMessage');
    expect(call!.token).toBe('xoxb-test');
    expect(call!.args.blocks).toEqual([
      { type: 'section', text: { type: 'mrkdwn', text: '*hi*' } },
    ]);
  });

  it('answers 429 with Retry-After, then 5xx, for the next calls only', async () => {
    fake.failNext('chat.postMessage', 1, { status: 429, retryAfterSeconds: 7 });
    fake.failNext('chat.postMessage', 1, { status: 503 });
    const limited = new webApi.WebClient('xoxb-test', {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
    });
    await expect(limited.chat.postMessage({ channel: 'U1', text: 'a' })).rejects.toMatchObject({
      code: 'slack_webapi_rate_limited_error',
      retryAfter: 7,
    });
    await expect(limited.chat.postMessage({ channel: 'U1', text: 'b' })).rejects.toMatchObject({
      code: 'slack_webapi_http_error',
      statusCode: 503,
    });
    await limited.chat.postMessage({ channel: 'U1', text: 'c' });
    expect(fake.messagesTo('U1').map((m) => m.text)).toEqual(['c']);
    expect(fake.calls.map((c) => c.status)).toEqual([429, 503, 200]);
  });

  it('can be down: connections reset, or refused, then up again', async () => {
    await fake.setDown('reset');
    await expect(client.auth.test()).rejects.toMatchObject({ code: 'slack_webapi_request_error' });
    await fake.setDown('refused');
    await expect(client.auth.test()).rejects.toMatchObject({ code: 'slack_webapi_request_error' });
    await fake.setDown(false);
    const ok: webApi.WebAPICallResult = await client.auth.test();
    expect(ok.ok).toBe(true);
  });

  it('takes a file upload in three steps and keeps its content', async () => {
    await client.files.uploadV2({
      channel_id: 'D0042',
      filename: 'id_ed25519',
      content: 'PRIVATE KEY BYTES',
      title: 'Your SSH key',
    });
    const [file] = fake.files();
    expect(file).toMatchObject({
      filename: 'id_ed25519',
      content: 'PRIVATE KEY BYTES',
      channel: 'D0042',
    });
  });

  it('receives response_url posts and refuses an expired one', async () => {
    const url = fake.responseUrl();
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'starting…', response_type: 'ephemeral' }),
    });
    expect(res.status).toBe(200);
    fake.expireResponseUrl(url);
    expect((await fetch(url, { method: 'POST', body: '{}' })).status).toBe(404);
    expect(fake.responsePosts(url).map((p) => p.body.text)).toEqual(['starting…']);
  });

  it('lists user group members and hands out the Socket Mode URL', async () => {
    fake.setUsergroupMembers('S0OPS', ['U9']);
    expect((await client.usergroups.users.list({ usergroup: 'S0OPS' })).users).toEqual(['U9']);
    fake.setSocketModeUrl('ws://127.0.0.1:1/');
    expect((await client.apps.connections.open()).url).toBe('ws://127.0.0.1:1/');
  });
});
