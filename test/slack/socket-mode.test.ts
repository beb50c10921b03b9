import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { appHomeOpened, blockActionPayload, eventEnvelope } from '../helpers/slack-request.js';
import {
  socketCommand as command,
  startSocketModeServer,
  type SocketModeServer,
} from '../helpers/socket-mode.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { shownText } from './helpers.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Slack's JSON is checked field by field
type Json = any;

describe('Slack front end in Socket Mode', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  let socket: SocketModeServer;

  beforeAll(async () => {
    fake = await startFakeSlack();
    socket = await startSocketModeServer();
    fake.setSocketModeUrl(socket.url);
    stack = await startTestStack({
      slack: { botToken: 'xoxb-socket-test', appToken: 'xapp-socket-test' },
      overrides: { slack: { apiUrl: fake.apiUrl, mode: 'socket' } },
    });
    await stack.fillPool('v1.30-1node', 1);
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await socket?.close();
    await fake?.close();
  });

  it('connects with the app token, answers commands in the ack, and serves no HTTP endpoint', async () => {
    const open = fake.calls.filter((c) => c.method === 'apps.connections.open');
    expect(open.length).toBeGreaterThanOrEqual(1);
    expect(open.every((c) => c.token === 'xapp-socket-test')).toBe(true);
    const id = socket.send('slash_commands', command('U1001', 'list', fake.responseUrl()));
    const ack = await fake.waitFor(() => socket.ackOf(id), 'the ack of /lab list');
    expect(shownText(ack.payload)).toContain('Fixture one');
    expect(ack.payload.response_type).toBe('ephemeral');
    const http = await fetch(`${stack.labvirt.apiUrl}/slack/events`, { method: 'POST' });
    expect(http.status).toBe(404);
  });

  it('reconnects after a disconnect and keeps serving: start, a button, the Home tab', async () => {
    const opens = () => fake.calls.filter((c) => c.method === 'apps.connections.open').length;
    const before = opens();
    socket.disconnect();
    await fake.waitFor(() => opens() > before, 'a new apps.connections.open');
    await fake.waitFor(
      () => socket.connections.filter((c) => c.readyState === c.OPEN).length === 1,
      'the new connection',
    );

    const responseUrl = fake.responseUrl();
    const started = socket.send(
      'slash_commands',
      command('U2001', 'start fixture-one', responseUrl),
    );
    const ack = await fake.waitFor(() => socket.ackOf(started), 'the ack of start');
    expect(shownText(ack.payload)).toContain('Starting');
    await fake.waitFor(() => fake.responsePosts(responseUrl).length > 0, 'the start answer');
    const [session] = await stack.labvirt.service.list({ student: 'T0001.U2001' });
    expect(session).toBeDefined();
    await stack.untilSession(session!.id, 'active');

    const click = socket.send(
      'interactive',
      blockActionPayload({
        userId: 'U2001',
        actionId: 'lab_hint',
        value: session!.id,
        responseUrl,
      }),
    );
    await fake.waitFor(() => socket.ackOf(click), 'the ack of the click');
    await fake.waitFor(
      () => fake.responsePosts(responseUrl).some((p) => shownText(p.body).includes('Hint 1 of 2')),
      'the hint',
    );

    const home = socket.send('events_api', eventEnvelope(appHomeOpened('U2001')));
    await fake.waitFor(() => socket.ackOf(home), 'the ack of app_home_opened');
    const published = await fake.waitFor(
      () => fake.callsOf('views.publish').find((c) => c.args.user_id === 'U2001'),
      'the Home tab',
    );
    expect(shownText(published.args.view as Json)).toContain(session!.id);
    await stack.labvirt.service.stop(session!.id);
  }, 60_000);
});
