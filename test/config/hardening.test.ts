import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';

/** Configuration that would leak a secret or open the network: refused, never echoed. */
function writeConfig(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'labvirt-config-h-')), 'labvirt.yaml');
  writeFileSync(file, text);
  return file;
}

function messageOf(overrides: Record<string, unknown>): string {
  try {
    loadConfig({ env: {}, overrides });
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('config hardening', () => {
  it('never echoes unknown settings that are mappings or look like secrets', () => {
    const file = writeConfig(
      [
        'slack: { creds: { bot: xoxb-222-333-abcdefghijkl, signing: 0f1e2d3c } }',
        'redis: { backup: "redis://admin:pa55w0rd@10.0.0.9:6379" }',
        'extra: aB3dE5fG7hJ9kL1mN3pQ5rS7',
        'colour: blue',
      ].join('\n'),
    );
    let message = '';
    try {
      loadConfig({ file, env: {} });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/unknown setting "creds"/);
    expect(message).toMatch(/unknown setting "backup"/);
    expect(message).toMatch(/unknown setting "extra"/);
    expect(message).not.toMatch(/xoxb|0f1e2d3c|pa55w0rd|admin|aB3dE5fG7hJ9kL1mN3pQ5rS7/);
    expect(message).toContain('(got "blue")'); // plain words are still shown, to help
  });

  it('`config show` hides credentials in URLs', async () => {
    const { main } = await import('../../src/cli/main.js');
    const file = writeConfig(
      'redis: { url: "redis://labvirt:s3cret-pass@redis.internal:6379/0" }\n',
    );
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out += String(chunk);
      return true;
    });
    try {
      await main(['node', 'labvirt', '--config', file, 'config', 'show']);
    } finally {
      spy.mockRestore();
    }
    expect(out).toContain('url: redis://***@redis.internal:6379/0');
    expect(out).not.toContain('s3cret-pass');
  }, 60_000);

  it('refuses an empty deniedEgressCidrs, naming the key and the fix', () => {
    const text = messageOf({ network: { deniedEgressCidrs: [] } });
    expect(text).toContain('network.deniedEgressCidrs: must not be empty');
    expect(text).toContain('169.254.169.254');
    expect(text).toMatch(/remove the key for the defaults/);
  });

  it('validates bindAddress, gatewayPodLabels, gatewayNamespace and schedule time zones', () => {
    expect(messageOf({ ssh: { bindAddress: 'gateway.example.org' } })).toContain(
      'ssh.bindAddress: an IP address to listen on',
    );
    expect(messageOf({ network: { gatewayPodLabels: {} } })).toContain(
      'network.gatewayPodLabels: must name at least one label',
    );
    expect(messageOf({ network: { gatewayPodLabels: { 'app name': 'x' } } })).toMatch(
      /network\.gatewayPodLabels.*a Kubernetes label key/,
    );
    expect(messageOf({ network: { gatewayPodLabels: { app: 'no spaces' } } })).toMatch(
      /network\.gatewayPodLabels\.app: a Kubernetes label value/,
    );
    expect(messageOf({ network: { gatewayNamespace: 'Labvirt_NS' } })).toContain(
      'network.gatewayNamespace: a Kubernetes namespace name',
    );
    const badZone = messageOf({
      schedules: [
        {
          name: 'class',
          cron: '0 9 * * 2',
          timezone: 'Mars/Olympus',
          flavor: 'v1.30-3node',
          minWarm: 2,
        },
      ],
    });
    expect(badZone).toContain('schedules.0.timezone: an IANA time zone such as "Europe/Berlin"');
    // Good values pass.
    const cfg = loadConfig({
      env: {},
      overrides: {
        ssh: { bindAddress: '::' },
        network: {
          gatewayPodLabels: { 'app.kubernetes.io/name': 'labvirt-gw' },
          gatewayNamespace: 'lab-system',
        },
        schedules: [
          {
            name: 'class',
            cron: '0 9 * * 2',
            timezone: 'Europe/Berlin',
            flavor: 'v1.30-3node',
            minWarm: 2,
          },
        ],
      },
    });
    expect(cfg.ssh.bindAddress).toBe('::');
  });
});
