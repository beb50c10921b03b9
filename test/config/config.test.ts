import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
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
    expect(cfg.vm.controlPlane).toEqual({
      cpus: 2,
      memory: '2Gi',
      cpuLimit: '1',
      dataDisk: '20Gi',
    });
    expect(cfg.network.podCidr).toBe('10.243.0.0/16');
    expect(cfg.ssh.mode).toBe('gateway');
  });

  it('runs prepare jobs far more at once than provisioning jobs, and lets both be set', () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg.pool.prepareConcurrency).toBe(200);
    expect(cfg.pool.workerConcurrency).toBe(5);
    const set = loadConfig({ env: {}, overrides: { pool: { prepareConcurrency: 50 } } });
    expect(set.pool.prepareConcurrency).toBe(50);
    expect(() => loadConfig({ env: {}, overrides: { pool: { prepareConcurrency: 0 } } })).toThrow(
      /pool\.prepareConcurrency/,
    );
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

describe('loadConfig: every problem at once, each with what to write instead', () => {
  it('lists checks across settings even when single settings are invalid too', () => {
    const file = writeConfig(
      [
        'flavors:',
        '  v1.30-3node: { kubernetesVersion: "1.30", nodes: 2 }',
        '  v1.31-1node: { kubernetesVersion: "1.31", nodes: 1, minWarm: 9, maxTotal: 2 }',
        '  v1.29-1node: { kubernetesVersion: "1.29", nodes: 3 }',
        'schedules:',
        '  - { name: class, cron: "0 9 * * 2", flavor: v1.99-1node, minWarm: 5 }',
        'sessions: { defaultMinutes: 300 }',
        'ssh: { mode: telnet }',
      ].join('\n'),
    );
    const err = problemsOf(() => loadConfig({ file, env: {} }));
    const byPath = Object.fromEntries(err.problems.map((p) => [p.path, p.message]));
    expect(byPath['ssh.mode']).toMatch(/gateway/);
    expect(byPath['flavors.v1.30-3node.nodes']).toMatch(/1 .* or 3 /);
    expect(byPath['flavors.v1.31-1node.minWarm']).toMatch(/exceeds maxTotal \(2\)/);
    expect(byPath['flavors.v1.29-1node']).toContain('"v1.29-3node"');
    expect(byPath['schedules.0.flavor']).toMatch(/unknown flavor "v1.99-1node"/);
    expect(byPath['sessions.defaultMinutes']).toMatch(/exceeds maxMinutes \(240\)/);
  });

  it('refuses CIDRs that are not IPv4 networks, and a service range overlapping the pod range', () => {
    const bad = problemsOf(() =>
      loadConfig({
        env: {},
        overrides: {
          network: {
            podCidr: '999.1.1.1/99',
            serviceCidr: '10.95.0.1/16',
            deniedEgressCidrs: ['10.0.0.0/33'],
          },
        },
      }),
    );
    const byPath = Object.fromEntries(bad.problems.map((p) => [p.path, p]));
    expect(byPath['network.podCidr']).toMatchObject({ value: '999.1.1.1/99' });
    expect(byPath['network.serviceCidr']?.message).toContain('did you mean 10.95.0.0/16?');
    expect(byPath['network.deniedEgressCidrs.0']?.value).toBe('10.0.0.0/33');

    const overlap = problemsOf(() =>
      loadConfig({ env: {}, overrides: { network: { serviceCidr: '10.243.128.0/17' } } }),
    );
    expect(overlap.problems).toEqual([
      {
        path: 'network.serviceCidr',
        value: '10.243.128.0/17',
        message: 'a range that does not overlap podCidr (10.243.0.0/16)',
      },
    ]);
    expect(
      loadConfig({ env: {}, overrides: { network: { serviceCidr: '10.244.0.0/16' } } }).network,
    ).toMatchObject({ podCidr: '10.243.0.0/16', serviceCidr: '10.244.0.0/16' });
  });

  it('names each unknown setting at its own path, with the nearest known name', () => {
    const file = writeConfig('redis: { url: "redis://r:6379", prefx: lv }\ncolour: blue\n');
    const err = problemsOf(() => loadConfig({ file, env: {} }));
    expect(err.problems).toContainEqual({
      path: 'redis.prefx',
      value: 'lv',
      message: 'unknown setting "prefx": did you mean "prefix"?',
    });
    const colour = err.problems.find((p) => p.path === 'colour');
    expect(colour?.value).toBe('blue');
    expect(colour?.message).toMatch(/known settings here: namespacePrefix, .*redis/);
  });

  it('says which environment variable gave a bad value', () => {
    const err = problemsOf(() =>
      loadConfig({ env: { LABVIRT_SSH_MODE: 'telnet', LABVIRT_REDIS_URL: 'localhost:6379' } }),
    );
    expect(err.problems.map((p) => p.path).sort()).toEqual([
      'redis.url (from $LABVIRT_REDIS_URL)',
      'ssh.mode (from $LABVIRT_SSH_MODE)',
    ]);
    expect(err.message).toContain('(got "telnet")');
  });

  it('explains an unquoted Kubernetes version', () => {
    const file = writeConfig('flavors:\n  v1.30-1node: { kubernetesVersion: 1.30, nodes: 1 }\n');
    const err = problemsOf(() => loadConfig({ file, env: {} }));
    expect(err.problems[0]).toMatchObject({
      path: 'flavors.v1.30-1node.kubernetesVersion',
      value: 1.3,
    });
    expect(err.problems[0]?.message).toMatch(/in quotes/);
  });

  it('never prints a secret written where a variable name belongs, nor a URL password', () => {
    const file = writeConfig(
      [
        'slack: { botTokenEnv: xoxb-1234-secret, signingSecret: s3cr3t-value }',
        'api: { tokenEnv: "hunter2-token" }',
        'redis: { url: "http://user:pa55word@redis:6379" }',
      ].join('\n'),
    );
    const err = problemsOf(() => loadConfig({ file, env: {} }));
    expect(err.problems.map((p) => p.path).sort()).toEqual([
      'api.tokenEnv',
      'redis.url',
      'slack.botTokenEnv',
      'slack.signingSecret',
    ]);
    expect(err.message).not.toMatch(/xoxb-1234-secret|s3cr3t-value|hunter2-token|pa55word/);
    expect(err.message).toContain('the name of an environment variable such as SLACK_BOT_TOKEN');
    expect(err.message).toContain('value not shown');
  });

  it('gives the line of a YAML syntax error', () => {
    const file = writeConfig('redis:\n  url: [redis://x\n');
    const err = problemsOf(() => loadConfig({ file, env: {} }));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]?.message).toMatch(/^not valid YAML at line \d+, column \d+: /);
    expect(err.message).not.toContain('(got');
  });
});

describe('labvirt config check', () => {
  it('refuses a bad configuration with exit code 2, listing every problem', async () => {
    const { main } = await import('../../src/cli/main.js');
    const file = writeConfig('ssh: { mode: telnet }\nsessions: { maxMinutes: 30 }\n');
    const errors: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => {
      errors.push(a.join(' '));
    });
    const saved = process.env.LABVIRT_API_PORT;
    process.env.LABVIRT_API_PORT = 'eighty';
    try {
      process.exitCode = undefined;
      await main(['node', 'labvirt', '--config', file, 'config', 'check']);
      expect(process.exitCode).toBe(2);
    } finally {
      process.exitCode = undefined;
      if (saved === undefined) delete process.env.LABVIRT_API_PORT;
      else process.env.LABVIRT_API_PORT = saved;
      spy.mockRestore();
    }
    const text = errors.join('\n');
    expect(text).toContain(`invalid configuration (${file} + environment):`);
    expect(text).toContain('- $LABVIRT_API_PORT: expected a whole number (got "eighty")');
    expect(text).toContain(
      '- ssh.mode: Invalid option: expected one of "gateway"|"nodeport" (got "telnet")',
    );
    expect(text).toContain(
      '- sessions.defaultMinutes: defaultMinutes (60) exceeds maxMinutes (30) (not set: the default applies)',
    );
  });
});
