import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';

function writeConfig(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-config-'));
  const file = join(dir, 'labvirt.yaml');
  writeFileSync(file, text);
  return file;
}

function problemsOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('gives working defaults with no file and no environment', () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg.namespacePrefix).toBe('lab-');
    expect(Object.keys(cfg.flavors)).toContain('v1.30-3node');
    expect(cfg.vm.controlPlane).toEqual({ cpus: 2, memory: '1536Mi', cpuLimit: '1' });
    expect(cfg.network.podCidr).toBe('10.243.0.0/16');
    expect(cfg.ssh.mode).toBe('gateway');
  });

  it('reads a YAML file and lets environment variables override it', () => {
    const file = writeConfig(
      [
        'namespacePrefix: cka-',
        'flavors:',
        '  v1.31-3node: { kubernetesVersion: "1.31", nodes: 3, minWarm: 4, maxTotal: 8 }',
        'redis: { url: redis://10.1.1.1:6379 }',
      ].join('\n'),
    );
    const cfg = loadConfig({ file, env: { LABVIRT_REDIS_URL: 'redis://127.0.0.1:7000' } });
    expect(cfg.namespacePrefix).toBe('cka-');
    expect(cfg.flavors['v1.31-3node']?.minWarm).toBe(4);
    expect(cfg.redis.url).toBe('redis://127.0.0.1:7000');
  });

  it('lists every problem with path, value and expectation', () => {
    const file = writeConfig(
      [
        'namespacePrefix: Bad_Prefix',
        'flavors:',
        '  v1.30-3node: { kubernetesVersion: "1.30", nodes: 2, minWarm: 5, maxTotal: 3 }',
        'ssh: { mode: telnet }',
        'colour: blue',
      ].join('\n'),
    );
    const err = problemsOf(() => loadConfig({ file, env: { LABVIRT_API_PORT: 'eighty' } }));
    const byPath = Object.fromEntries(err.problems.map((p) => [p.path, p]));
    expect(byPath['namespacePrefix']?.value).toBe('Bad_Prefix');
    expect(byPath['flavors.v1.30-3node.nodes']?.value).toBe(2);
    expect(byPath['ssh.mode']?.message).toMatch(/gateway|nodeport/);
    expect(byPath['$LABVIRT_API_PORT']?.message).toMatch(/whole number/);
    expect(err.problems.some((p) => p.message.includes('"colour"'))).toBe(true);
    expect(err.message).toContain(file);
  });

  it('refuses a flavor whose name disagrees with its version and nodes', () => {
    const file = writeConfig(
      'flavors:\n  v1.30-3node: { kubernetesVersion: "1.31", nodes: 3, minWarm: 1, maxTotal: 2 }\n',
    );
    const err = problemsOf(() => loadConfig({ file, env: {} }));
    expect(err.problems[0]?.message).toContain('v1.31-3node');
  });

  it('refuses minWarm above maxTotal and schedules for unknown flavors', () => {
    const file = writeConfig(
      [
        'flavors:',
        '  v1.30-1node: { kubernetesVersion: "1.30", nodes: 1, minWarm: 9, maxTotal: 2 }',
        'schedules:',
        '  - { name: class, cron: "0 9 * * 2", flavor: v1.99-3node, minWarm: 3 }',
      ].join('\n'),
    );
    const err = problemsOf(() => loadConfig({ file, env: {} }));
    const paths = err.problems.map((p) => p.path);
    expect(paths).toContain('flavors.v1.30-1node.minWarm');
    expect(paths).toContain('schedules.0.flavor');
  });

  it('names a missing file and a non-mapping file', () => {
    expect(
      problemsOf(() => loadConfig({ file: '/nonexistent/labvirt.yaml', env: {} })).message,
    ).toMatch(/cannot read config file/);
    const file = writeConfig('- just\n- a list\n');
    expect(problemsOf(() => loadConfig({ file, env: {} })).message).toMatch(/mapping/);
  });
});
