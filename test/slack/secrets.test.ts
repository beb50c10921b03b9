import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { slackSecretsFrom } from '../../src/slack/index.js';

describe('Slack secrets from the environment', () => {
  it('runs without Slack when the bot token variable is unset or empty', () => {
    const config = loadConfig({ env: {} });
    expect(slackSecretsFrom(config, {})).toBeUndefined();
    expect(slackSecretsFrom(config, { SLACK_BOT_TOKEN: '', SLACK_SIGNING_SECRET: 's' })).toBe(
      undefined,
    );
  });

  it('reads only the variables the config names', () => {
    const config = loadConfig({
      env: {},
      overrides: {
        slack: { botTokenEnv: 'LAB_BOT', signingSecretEnv: 'LAB_SIGNING', appTokenEnv: 'LAB_APP' },
      },
    });
    const env = {
      LAB_BOT: 'xoxb-1',
      LAB_SIGNING: 'sign',
      SLACK_BOT_TOKEN: 'xoxb-ignored',
      SLACK_APP_TOKEN: 'xapp-ignored',
    };
    expect(slackSecretsFrom(config, env)).toEqual({
      botToken: 'xoxb-1',
      signingSecret: 'sign',
      appToken: undefined,
    });
    expect(slackSecretsFrom(config, { ...env, LAB_APP: 'xapp-1' })?.appToken).toBe('xapp-1');
  });
});
