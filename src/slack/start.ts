import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { StudentService } from '../sessions/types.js';
import type { Store } from '../store/index.js';
import { AckFirst } from './ack-first.js';
import { createSlackApp } from './app.js';
import type { SlackDeps } from './context.js';
import type { SlackSecrets } from './secrets.js';

export interface StartSlackOptions {
  config: Config;
  secrets: SlackSecrets;
  service: StudentService;
  store: Store;
  /**
   * The store the front door's checks before an acknowledgement use (replay
   * marks, rate limits): on a Redis connection of its own, an acknowledgement
   * never waits behind a burst's session work queued on the main one.
   * Default: `store`.
   */
  frontDoorStore?: Store;
  /** The delivery side (src/slack/notifier.ts). */
  notifier: SlackDeps['notifier'];
  log: Logger;
  now?: () => number;
  /** Web API retries of the handlers' own calls (tests: 0). */
  clientRetries?: number;
}

export interface SlackHandle {
  mode: 'http' | 'socket';
  /** HTTP mode without `slack.port`: the API serves this at `/slack/events`. */
  httpListener?: RequestListener;
  /** HTTP mode with `slack.port`: the base URL of labvirt's own Slack server. */
  url?: string;
  stop(): Promise<void>;
}

/**
 * Starts the Slack front end: the `/lab` command, the buttons and the Home
 * tab, over HTTP (`/slack/events`) or Socket Mode. Undefined (with a warning)
 * when the secret the mode needs is missing.
 */
export async function startSlack(options: StartSlackOptions): Promise<SlackHandle | undefined> {
  const { config, secrets } = options;
  const slack = config.slack;
  const log = options.log.child({ component: 'slack' });
  const needed = slack.mode === 'socket' ? secrets.appToken : secrets.signingSecret;
  if (!needed) {
    log.warn(
      { mode: slack.mode },
      `Slack front end off: set $${slack.mode === 'socket' ? slack.appTokenEnv : slack.signingSecretEnv}`,
    );
    return undefined;
  }
  const deps: SlackDeps = {
    service: options.service,
    notifier: options.notifier,
    store: options.frontDoorStore ?? options.store,
    settings: {
      command: slack.command,
      commandsPerMinute: slack.commandsPerMinute,
      publicUrl: config.api.publicUrl,
      keyLinkMinutes: slack.keyLinkMinutes,
      operators: slack.operators,
      operatorGroup: slack.operatorGroup,
      extendMinutes: config.sessions.extendMinutes,
    },
    log,
    now: options.now ?? Date.now,
    ackFirst: slack.mode === 'http' ? new AckFirst() : undefined,
  };
  const app = createSlackApp({
    mode: slack.mode,
    botToken: secrets.botToken,
    signingSecret: secrets.signingSecret,
    appToken: secrets.appToken,
    apiUrl: slack.apiUrl,
    clientRetries: options.clientRetries,
    deps,
  });
  if (slack.mode === 'socket') {
    await app.start();
    log.info('Slack connected in Socket Mode');
    return { mode: 'socket', stop: () => app.stop() };
  }
  if (slack.port === undefined) {
    return { mode: 'http', httpListener: app.httpListener, stop: async () => undefined };
  }
  const listener = app.httpListener!;
  const server = createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] !== '/slack/events') {
      res.writeHead(404).end();
      return;
    }
    listener(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(slack.port, config.api.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.api.host === '0.0.0.0' ? '127.0.0.1' : config.api.host;
  log.info({ port }, 'Slack requests served on their own port');
  return {
    mode: 'http',
    url: `http://${host}:${port}`,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
