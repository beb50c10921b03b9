/**
 * The bench's stand-in for Slack's servers and for API clients: a process of
 * its own that sends a round of requests all at once when asked, so the
 * senders' CPU is not counted as labvirt's (Slack does not run in labvirt's
 * event loop). Driven over IPC by bench/slack.bench.ts.
 */
import { postSlashCommand } from '../test/helpers/slack-request.js';

export type Round =
  /** Signed `/lab <text>` slash commands, one per Slack user id. */
  | { kind: 'slack'; url: string; users: string[]; text: string }
  /** `POST <url>` with a bearer token, one per JSON body. */
  | { kind: 'api'; url: string; token: string; bodies: string[] }
  /** `GET <url>` `count` times: the same run's baseline (e.g. `/healthz`). */
  | { kind: 'get'; url: string; count: number };

export interface Sent {
  /** The Slack user id, or the index of the API body. */
  key: string;
  /** Wall-clock time the request was sent, comparable across processes. */
  t0: number;
  /** From sending to the end of the answer. */
  ms: number;
  status: number;
  body: string;
}

async function timed(key: string, send: () => Promise<{ status: number; text: string }>) {
  const t0 = Date.now();
  const started = performance.now();
  try {
    const res = await send();
    return { key, t0, ms: performance.now() - started, status: res.status, body: res.text };
  } catch (err) {
    return { key, t0, ms: performance.now() - started, status: 0, body: (err as Error).message };
  }
}

function sendRound(round: Round): Promise<Sent[]> {
  if (round.kind === 'slack') {
    return Promise.all(
      round.users.map((userId) =>
        timed(userId, () => postSlashCommand(round.url, { text: round.text, userId })),
      ),
    );
  }
  if (round.kind === 'get') {
    return Promise.all(
      Array.from({ length: round.count }, (_, i) =>
        timed(String(i), async () => {
          const res = await fetch(round.url);
          return { status: res.status, text: await res.text() };
        }),
      ),
    );
  }
  return Promise.all(
    round.bodies.map((body, i) =>
      timed(String(i), async () => {
        const res = await fetch(round.url, {
          method: 'POST',
          headers: { authorization: `Bearer ${round.token}`, 'content-type': 'application/json' },
          body,
        });
        return { status: res.status, text: await res.text() };
      }),
    ),
  );
}

process.on('message', (round: Round) => {
  void sendRound(round).then((sent) => process.send!(sent));
});
process.send!('ready');
