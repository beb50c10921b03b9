import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { slashCommandBody } from './slack-request.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Slack's JSON is checked field by field
type Json = any;

export interface SocketModeServer {
  /** What the fake Slack's `apps.connections.open` hands back. */
  readonly url: string;
  readonly connections: WebSocket[];
  /** Every message the client sent back (acks, with their envelope ids). */
  readonly acks: Json[];
  /** Sends an envelope on the newest open connection; returns its envelope id. */
  send(type: string, payload: unknown, extra?: Record<string, unknown>): string;
  ackOf(envelopeId: string): Json;
  /** Tells the client to reconnect, as Slack does before it rotates a connection. */
  disconnect(): void;
  close(): Promise<void>;
}

/**
 * A stand-in for Slack's Socket Mode endpoint on loopback: it greets each
 * connection with `hello`, sends envelopes, collects the acks, and can tell
 * the client to reconnect with `disconnect`.
 */
export async function startSocketModeServer(): Promise<SocketModeServer> {
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
    send(type, payload, extra = {}) {
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
    ackOf: (envelopeId) => acks.find((a) => a.envelope_id === envelopeId),
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
export function socketCommand(
  userId: string,
  text: string,
  responseUrl: string,
): Record<string, string> {
  return Object.fromEntries(
    new URLSearchParams(slashCommandBody({ userId, text, responseUrl })).entries(),
  );
}
