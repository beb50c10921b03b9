import type { RequestListener } from 'node:http';
import {
  App,
  HTTPReceiver,
  LogLevel,
  SocketModeReceiver,
  type Logger as BoltLogger,
} from '@slack/bolt';
import type { Logger } from '../log/index.js';
import { registerActions } from './actions.js';
import { registerCommands } from './commands.js';
import type { SlackDeps } from './context.js';
import { registerHome } from './home.js';
import { frontDoorContext, slackHttpGuard } from './http.js';

export interface SlackAppOptions {
  mode: 'http' | 'socket';
  botToken: string;
  /** HTTP mode: the app's signing secret. */
  signingSecret?: string;
  /** Socket Mode: the app-level token (`xapp-…`). */
  appToken?: string;
  /** The Web API base URL (`slack.apiUrl`). */
  apiUrl: string;
  /** Retries of a failed Web API call; Bolt's default (10, over about 30 min) when unset. */
  clientRetries?: number;
  deps: SlackDeps;
}

export interface SlackApp {
  app: App;
  /** HTTP mode: serves `/slack/events` (mounted on the API, or on `slack.port`). */
  httpListener?: RequestListener;
  /** Socket Mode: connects out to Slack. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Bolt's own logging through labvirt's logger, at warn and above: Bolt logs
 * payloads at debug, and those carry user text.
 */
function boltLogger(log: Logger): BoltLogger {
  const text = (msg: unknown[]) =>
    msg.map((m) => (m instanceof Error ? m.message : String(m))).join(' ');
  return {
    debug: () => undefined,
    info: () => undefined,
    warn: (...msg: unknown[]) => log.warn(text(msg)),
    error: (...msg: unknown[]) => log.error(text(msg)),
    setLevel: () => undefined,
    getLevel: () => LogLevel.WARN,
    setName: () => undefined,
  };
}

/**
 * The Bolt app with labvirt's command, buttons and Home tab. HTTP mode makes
 * a receiver that never listens itself: its request listener sits behind
 * {@link slackHttpGuard} wherever labvirt serves `/slack/events`. Socket Mode
 * needs no public URL.
 */
export function createSlackApp(options: SlackAppOptions): SlackApp {
  const { deps } = options;
  const logger = boltLogger(deps.log.child({ component: 'bolt' }));
  const clientOptions = {
    slackApiUrl: options.apiUrl,
    ...(options.clientRetries !== undefined
      ? { retryConfig: { retries: options.clientRetries } }
      : {}),
  };
  let httpListener: RequestListener | undefined;
  let receiver: HTTPReceiver | SocketModeReceiver;
  if (options.mode === 'socket') {
    if (!options.appToken) throw new Error('Slack Socket Mode needs an app-level token');
    receiver = new SocketModeReceiver({
      appToken: options.appToken,
      logger,
      installerOptions: { clientOptions },
    });
  } else {
    if (!options.signingSecret) throw new Error('Slack over HTTP needs the signing secret');
    const http = new HTTPReceiver({
      signingSecret: options.signingSecret,
      endpoints: '/slack/events',
      // Acknowledge first (Slack waits 3 s at most), work after.
      processBeforeResponse: false,
      // The guard below verifies every request's signature on the very bytes
      // it hands Bolt (and answers Slack's unsigned SSL check itself): a
      // second check here would only cost time on the way to the ack.
      signatureVerification: false,
      // The student's command count, taken with the replay mark.
      customPropertiesExtractor: frontDoorContext,
      logger,
    });
    receiver = http;
    httpListener = slackHttpGuard({
      signingSecret: options.signingSecret,
      boltListener: http.requestListener,
      store: deps.store,
      log: deps.log,
      now: deps.now,
      ackFirst: deps.ackFirst,
    });
  }
  const app = new App({
    receiver,
    // One workspace, one bot token. Given as an authorize function (not
    // `token`) so that Bolt never calls auth.test to learn the bot's ids:
    // with Slack unreachable, a command must still be acknowledged and a
    // session still start.
    authorize: async () => ({ botToken: options.botToken }),
    // No conversation store: labvirt keeps nothing per conversation, and
    // Bolt's default (in this process's memory, wrong for several replicas)
    // looks every request up and builds an Error for each miss, on the way
    // to the acknowledgement.
    convoStore: false,
    clientOptions,
    logger,
  });
  app.error(async (err) => {
    deps.log.error({ err: err.message }, 'Slack handler failed');
  });
  registerCommands(app, deps);
  registerActions(app, deps);
  registerHome(app, deps);
  const socket = options.mode === 'socket' ? (receiver as SocketModeReceiver) : undefined;
  return {
    app,
    httpListener,
    async start() {
      if (socket) await socket.start();
    },
    async stop() {
      if (socket) await socket.stop();
    },
  };
}
