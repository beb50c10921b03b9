import { stringify } from 'yaml';

/**
 * labvirt's Slack app manifest, for either transport. The checked-in
 * deploy/slack/manifest*.yaml are this function's output (a test keeps them
 * so); `labvirt slack manifest` prints one for an installation, with its own
 * address, command and lab ids in the command's usage hint (Slack completes
 * no arguments: the hint is what it shows while the student types).
 */

export interface ManifestOptions {
  mode: 'http' | 'socket';
  /** labvirt's public address (HTTP mode), e.g. `https://labvirt.example.org`. */
  publicUrl?: string;
  command: string;
  /** Lab ids to show in the usage hint of `start`. */
  labIds?: string[];
}

/** Scopes labvirt's code uses, and why (test/deploy/slack-manifest.test.ts checks them). */
export const BOT_SCOPES = [
  'commands', // the slash command
  'chat:write', // the status message, answers, key links
  'im:write', // conversations.open: the DM's D… id that chat.update needs
  'im:history', // conversations.history: a status message posted just before a crash
  'files:write', // a session's private key as a file
  'usergroups:read', // slack.operatorGroup
] as const;

const USAGE_HINT_MAX = 300;
const EXAMPLE_URL = 'https://labvirt.example.org';

export function usageHint(labIds: string[] = []): string {
  const tail = ' | status | check | hint | extend [minutes] | stop | key <ssh public key> | help';
  const generic = `list | start <lab>${tail}`;
  if (labIds.length === 0) return generic;
  let ids = '';
  for (const id of [...labIds].sort()) {
    const next = ids ? `${ids}|${id}` : id;
    if (`list | start <${next}|…>${tail}`.length > USAGE_HINT_MAX) {
      return `list | start <${ids}|…>${tail}`;
    }
    ids = next;
  }
  return `list | start <${ids}>${tail}`;
}

export function slackManifest(options: ManifestOptions): Record<string, unknown> {
  const http = options.mode === 'http';
  const base = (options.publicUrl ?? EXAMPLE_URL).replace(/\/+$/, '');
  const requestUrl = `${base}/slack/events`;
  return {
    display_information: {
      name: 'labvirt',
      description: 'Hands-on Kubernetes labs on disposable clusters',
      background_color: '#326ce5',
    },
    features: {
      app_home: {
        home_tab_enabled: true,
        messages_tab_enabled: true,
        messages_tab_read_only_enabled: true,
      },
      bot_user: { display_name: 'labvirt', always_online: true },
      slash_commands: [
        {
          command: options.command,
          ...(http ? { url: requestUrl } : {}),
          description: 'Start, check and stop Kubernetes labs',
          usage_hint: usageHint(options.labIds),
          should_escape: false,
        },
      ],
    },
    oauth_config: { scopes: { bot: [...BOT_SCOPES] } },
    settings: {
      event_subscriptions: {
        ...(http ? { request_url: requestUrl } : {}),
        bot_events: ['app_home_opened'],
      },
      interactivity: { is_enabled: true, ...(http ? { request_url: requestUrl } : {}) },
      org_deploy_enabled: false,
      socket_mode_enabled: !http,
      token_rotation_enabled: false,
    },
  };
}

/** The manifest as YAML, with a comment on how to use it. */
export function renderManifest(options: ManifestOptions): string {
  const header =
    options.mode === 'http'
      ? [
          "# labvirt's Slack app, HTTP mode: Slack posts commands, clicks and events to",
          "# labvirt's /slack/events (on the API's port unless slack.port is set).",
          ...(options.publicUrl
            ? []
            : [
                `# Replace ${EXAMPLE_URL} with labvirt's public address`,
                '# (or run `labvirt slack manifest --url <address>`).',
              ]),
        ]
      : [
          "# labvirt's Slack app, Socket Mode (slack.mode: socket): labvirt connects out",
          '# with an app-level token (connections:write), so it needs no public URL.',
        ];
  return [
    ...header,
    '# Create the app at https://api.slack.com/apps → "From an app manifest". See docs/slack.md.',
    stringify(slackManifest(options), { lineWidth: 0 }),
  ].join('\n');
}
