import { WebSocketServer, type WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import {
  appHomeOpened,
  blockActionPayload,
  eventEnvelope,
  slashCommandBody,
} from '../helpers/slack-request.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { shownText } from './helpers.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Slack's JSON is checked field by field
type Json = any;

/**
 * A stand-in for Slack's Socket Mode endpoint on loopback: it greets each
 * connection with `hello`, sends envelopes, collects the acks, and can tell
 * the client to reconnect with `disconnect`.
 */
async function startSocketServer() {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const connections: WebSocket[] = [];
  const acks: Json[] = [];
  let envelopeCounter = 0;
  server.on('connection', (socket) => {
    connections.push(socket);
    // Slack pings its clients; one that hears nothing for 30 s reconnects.
    const ping = setInterval(() => socket.ping(), 5_000);
    socket.on('close', () => clearInterval(ping));
    socket.on('message', (data) => acks.push(JSON.parse(String(data))));
    socket.send(JSON.stringify({ type: 'hello', num_connections: 1, debug_info: {} }));
  });
  const current = () => connections.filter((c) => c.readyState === c.OPEN).at(-1);
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    connections,
    acks,
    /** Sends an envelope on the newest open connection; returns its envelope id. */
    send(type: string, payload: unknown, extra: Record<string, unknown> = {}): string {
      const envelopeId = `env-${++envelopeCounter}`;
      const socket = current();
      if (!socket) throw new Error('no Socket Mode connection');
      socket.send(
        JSON.stringify({
          envelope_id: envelopeId,
          type,
          payload,
          accepts_response_payload: type === 'slash_commands',
          ...extra,
        }),
      );
      return envelopeId;
    },
    ackOf: (envelopeId: string) => acks.find((a) => a.envelope_id === envelopeId),
    disconnect() {
      current()?.send(JSON.stringify({ type: 'disconnect', reason: 'refresh_requested' }));
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.terminate();
        server.close(() => resolve());
      }),
  };
}

/** A slash command as Socket Mode carries it: the same fields as the HTTP form, as JSON. */
function command(userId: string, text: string, responseUrl: string) {
  return Object.fromEntries(
    new URLSearchParams(slashCommandBody({ userId, text, responseUrl })).entries(),
  );
}

describe('Slack front end in Socket Mode', () => {
  let stack: TestStack;
  let fake: FakeSlack;
  let socket: Awaited<ReturnType<typeof startSocketServer>>;

  beforeAll(async () => {
    fake = await startFakeSlack();
    socket = await startSocketServer();
    fake.setSocketModeUrl(socket.url);
    stack = await startTestStack({
      slack: { botToken: 'xoxb-socket-test', appToken: 'xapp-socket-test' },
      overrides: { slack: { apiUrl: fake.apiUrl, mode: 'socket' } },
    });
    await stack.labvirt.runMaintenance('replenish');
    await stack.until(async () => (await stack.warmCount('v1.30-1node')) >= 1, 'warm pool');
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
