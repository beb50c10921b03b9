import type { Config } from '../config/index.js';

/** Slack's secrets, read only from the environment variables the config names. */
export interface SlackSecrets {
  /** `xoxb-…`: the Web API (messages, App Home, files). */
  botToken: string;
  /** Verifies requests Slack posts to `/slack/events` (HTTP mode). */
  signingSecret?: string;
  /** `xapp-…` with `connections:write`: Socket Mode. */
  appToken?: string;
}

/** The secrets set in `env`; undefined without a bot token (labvirt then runs without Slack). */
export function slackSecretsFrom(
  config: Config,
  env: NodeJS.ProcessEnv = process.env,
): SlackSecrets | undefined {
  const botToken = env[config.slack.botTokenEnv];
  if (!botToken) return undefined;
  return {
    botToken,
    signingSecret: env[config.slack.signingSecretEnv] || undefined,
    appToken: env[config.slack.appTokenEnv] || undefined,
  };
}
