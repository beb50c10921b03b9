import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_ENV_OVERRIDES, loadConfig } from '../../src/config/index.js';
import { REFERENCE_FILE, renderConfigReference } from '../../scripts/config-reference.js';

describe('docs/config-reference.md', () => {
  const generated = renderConfigReference();
  const rows = generated
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split(' | ').map((c) => c.replace(/^\| /, '').trim()));

  it('is what the config schema generates (run `npm run docs:reference` after changing it)', () => {
    expect(readFileSync(REFERENCE_FILE, 'utf8')).toBe(generated);
  });

  it('describes every key, and lists every environment variable and default', () => {
    expect(rows.length).toBeGreaterThan(40);
    const undescribed = rows.filter((r) => !r[4] || r[4] === '|').map((r) => r[0]);
    expect(undescribed).toEqual([]);
    const envs = rows.map((r) => r[3]).filter(Boolean);
    expect(envs.sort()).toEqual(
      Object.keys(CONFIG_ENV_OVERRIDES)
        .map((e) => `\`${e}\``)
        .sort(),
    );
    // Defaults shown are the ones labvirt applies.
    const defaults = loadConfig({ env: {} });
    const row = (key: string) => rows.find((r) => r[0] === `\`${key}\``)!;
    expect(row('pool.jobLockSeconds')[2]).toBe(`\`${defaults.pool.jobLockSeconds}\``);
    expect(row('ssh.mode')[2]).toBe(`\`${defaults.ssh.mode}\``);
    expect(row('redis.url')[3]).toBe('`LABVIRT_REDIS_URL`');
  });
});
