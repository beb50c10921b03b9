import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { SUBCOMMANDS } from '../../src/slack/commands.js';
import { renderManifest, slackManifest, usageHint } from '../../src/slack/manifest.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** The bot scope each Web API method labvirt calls needs (Slack's method reference). */
const SCOPE_OF_METHOD: Record<string, string> = {
  'chat.postMessage': 'chat:write',
  'chat.update': 'chat:write',
  'conversations.open': 'im:write',
  'conversations.history': 'im:history',
  filesUploadV2: 'files:write',
  'usergroups.users.list': 'usergroups:read',
  'views.publish': '',
};

/** The Web API methods src/slack calls, read from its sources. */
function methodsUsed(): Set<string> {
  const dir = join(ROOT, 'src', 'slack');
  const found = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const source = readFileSync(join(dir, file), 'utf8');
    for (const m of source.matchAll(
      /\.(chat|views|files|conversations|usergroups)\.([a-zA-Z]+(?:\.[a-zA-Z]+)?)\(/g,
    )) {
      found.add(`${m[1]}.${m[2]}`);
    }
    if (source.includes('filesUploadV2(')) found.add('filesUploadV2');
  }
  return found;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a manifest is checked field by field
function manifest(name: string): any {
  return parse(readFileSync(join(ROOT, 'deploy', 'slack', name), 'utf8'));
}

describe('Slack app manifests', () => {
  const config = loadConfig({ env: {} });

  it.each(['manifest.yaml', 'manifest-socket.yaml'])(
    '%s asks for exactly the scopes labvirt uses',
    (name) => {
      const used = [...methodsUsed()];
      for (const method of used)
        expect(SCOPE_OF_METHOD, `scope of ${method}`).toHaveProperty(method);
      const needed = new Set(['commands', ...used.map((m) => SCOPE_OF_METHOD[m]!).filter(Boolean)]);
      expect(new Set(manifest(name).oauth_config.scopes.bot)).toEqual(needed);
    },
  );

  it.each(['manifest.yaml', 'manifest-socket.yaml'])(
    '%s has the command, interactivity, the Home tab and app_home_opened',
    (name) => {
      const m = manifest(name);
      const [command] = m.features.slash_commands;
      expect(command.command).toBe(config.slack.command);
      for (const sub of SUBCOMMANDS.filter((s) => s !== 'pool')) {
        expect(command.usage_hint).toContain(sub);
      }
      expect(m.features.app_home.home_tab_enabled).toBe(true);
      expect(m.settings.interactivity.is_enabled).toBe(true);
      expect(m.settings.event_subscriptions.bot_events).toEqual(['app_home_opened']);
    },
  );

  it('points every HTTP request URL at /slack/events, and Socket Mode at none', () => {
    const http = manifest('manifest.yaml');
    for (const url of [
      http.features.slash_commands[0].url,
      http.settings.event_subscriptions.request_url,
      http.settings.interactivity.request_url,
    ]) {
      expect(new URL(url).pathname).toBe('/slack/events');
    }
    expect(http.settings.socket_mode_enabled).toBe(false);
    const socket = manifest('manifest-socket.yaml');
    expect(socket.settings.socket_mode_enabled).toBe(true);
    expect(JSON.stringify(socket)).not.toContain('https://');
  });

  it('are what `labvirt slack manifest` makes (generic address and hint)', () => {
    expect(manifest('manifest.yaml')).toEqual(slackManifest({ mode: 'http', command: '/lab' }));
    expect(manifest('manifest-socket.yaml')).toEqual(
      slackManifest({ mode: 'socket', command: '/lab' }),
    );
  });

  it("puts an installation's address, command and lab ids in the manifest it prints", () => {
    const m = parse(
      renderManifest({
        mode: 'http',
        publicUrl: 'https://labs.example.edu/',
        command: '/k8slab',
        labIds: ['pvc-pending', 'coredns-broken'],
      }),
    );
    expect(m.features.slash_commands[0]).toMatchObject({
      command: '/k8slab',
      url: 'https://labs.example.edu/slack/events',
      usage_hint: expect.stringContaining('start <coredns-broken|pvc-pending>'),
    });
    const many = usageHint(Array.from({ length: 100 }, (_, i) => `some-long-lab-id-${i}`));
    expect(many.length).toBeLessThanOrEqual(300);
    expect(many).toContain('|…>');
  });
});
