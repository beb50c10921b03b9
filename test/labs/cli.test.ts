import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerLabsCommands } from '../../src/cli/commands/labs.js';
import { FIXTURES, SHIPPED_LABS } from './helpers.js';

/**
 * The `labs` group on a program shaped like `buildProgram()` (same global
 * `--config`), so these tests do not depend on every other command group.
 */
async function run(...args: string[]) {
  const program = new Command('labvirt').option('-c, --config <file>').exitOverride();
  registerLabsCommands(program);
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    out.push(String(s));
    return true;
  });
  process.exitCode = undefined;
  let exitCode: number;
  try {
    await program.parseAsync(['node', 'labvirt', ...args]);
    exitCode = Number(process.exitCode ?? 0);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    exitCode = e.exitCode;
  } finally {
    process.exitCode = undefined;
    vi.restoreAllMocks();
  }
  return { exitCode, stdout: out.join('\n'), stderr: err.join('\n') };
}

/** A config file whose labsDir and flavors the test chooses. */
function configFile(labsDir: string, flavors = ['v1.30-3node', 'v1.31-1node']): string {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-labs-cli-'));
  const file = join(dir, 'labvirt.yaml');
  const lines = [`labsDir: ${JSON.stringify(labsDir)}`, 'flavors:'];
  for (const f of flavors) {
    const [, version, nodes] = /^v(1\.[0-9]+)-([13])node$/.exec(f)!;
    lines.push(
      `  ${f}: { kubernetesVersion: "${version}", nodes: ${nodes}, minWarm: 1, maxTotal: 2 }`,
    );
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

afterEach(() => vi.restoreAllMocks());

// Validating runs shellcheck on every lab script: 6 s alone, over 30 s once
// on a loaded machine.
describe('labvirt labs validate', { timeout: 120_000 }, () => {
  it('exits 0 with a summary for the shipped labs (labsDir from the config)', async () => {
    const r = await run('--config', configFile(SHIPPED_LABS), 'labs', 'validate');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^9 labs valid in .*labs \(18 checks\)$/m);
    expect(r.stdout).toMatch(/^note: shellcheck: \d+ script\(s\) checked$/m);
    // Every sim check runs where its real one does (see validate.test.ts).
    expect(r.stderr).not.toContain(': warning: ');
  });

  it('exits 1 and lists every problem with its fix', async () => {
    const r = await run(
      '--config',
      configFile(SHIPPED_LABS),
      'labs',
      'validate',
      join(FIXTURES, 'broken'),
    );
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      'unknown-key/lab.yaml (timelimitMinutes): unknown field `timelimitMinutes`',
    );
    expect(r.stderr).toContain('fix: did you mean `timeLimitMinutes`?');
    expect(r.stderr).toContain('not-executable/setup.sh (setup.0.script)');
    expect(r.stderr).toContain('yaml-syntax/lab.yaml: the lab folder has no lab.yaml');
    expect(r.stderr).toMatch(/^22 problems in .*broken$/m);
  });

  it('validates a single lab folder, and fails on a broken one', async () => {
    const config = configFile(SHIPPED_LABS);
    const good = await run(
      '--config',
      config,
      'labs',
      'validate',
      join(SHIPPED_LABS, 'etcd-restore'),
    );
    expect(good.stderr).toBe('');
    expect(good.exitCode).toBe(0);
    expect(good.stdout).toMatch(/^1 lab valid in .*etcd-restore \(2 checks\)$/m);
    const bad = await run(
      '--config',
      config,
      'labs',
      'validate',
      join(FIXTURES, 'broken', 'bad-node'),
    );
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain('bad-node/lab.yaml (setup.0.node)');
  });

  it('fails on a folder without labs', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'labvirt-no-labs-'));
    const r = await run('--config', configFile(SHIPPED_LABS), 'labs', 'validate', empty);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^no labs in .*: a lab is a folder holding lab.yaml/m);
  });

  it('refuses labs longer than sessions.maxMinutes allows', async () => {
    const config = configFile(SHIPPED_LABS);
    writeFileSync(
      config,
      `${readFileSync(config, 'utf8')}sessions: { maxMinutes: 40, defaultMinutes: 30 }\n`,
    );
    const r = await run('--config', config, 'labs', 'validate');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      'etcd-restore/lab.yaml (timeLimitMinutes): time limit of 45 minutes is longer than sessions may last (sessions.maxMinutes: 40)',
    );
    expect(r.stderr).toMatch(/^1 problem in /m);
  });

  it('uses the configured flavors', async () => {
    const r = await run('--config', configFile(SHIPPED_LABS, ['v1.31-1node']), 'labs', 'validate');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('netpol-blocking/lab.yaml (flavor): unknown flavor `v1.30-3node`');
    expect(r.stderr).toContain('add v1.30-3node to `flavors` in the configuration');
  });
});

describe('labvirt labs new', () => {
  it('writes a lab, validates it, and says what to run next', async () => {
    const labsDir = mkdtempSync(join(tmpdir(), 'labvirt-new-'));
    const config = configFile(labsDir);
    const r = await run('--config', config, 'labs', 'new', 'my-lab', '--flavor', 'v1.31-1node');
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`wrote ${join(labsDir, 'my-lab', 'lab.yaml')}`);
    expect(r.stdout).toMatch(/^1 lab valid in .*my-lab \(1 checks\)$/m);
    expect(r.stdout).toContain('`labvirt labs test my-lab --sim`');
    const again = await run('--config', config, 'labs', 'new', 'my-lab', '--flavor', 'v1.31-1node');
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain('already exists');
  });

  it('refuses a flavor the configuration does not have', async () => {
    const labsDir = mkdtempSync(join(tmpdir(), 'labvirt-new-'));
    const r = await run(
      '--config',
      configFile(labsDir),
      'labs',
      'new',
      'x',
      '--flavor',
      'v1.29-1node',
    );
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      "unknown flavor v1.29-1node: use one of v1.30-3node, v1.31-1node (the configuration's `flavors`)",
    );
  });
});

describe('labvirt labs list', () => {
  it('prints a table of id, flavor, difficulty, time limit and title', async () => {
    const r = await run('--config', configFile(SHIPPED_LABS), 'labs', 'list');
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+FLAVOR\s+DIFFICULTY\s+TIME\s+TITLE$/);
    expect(lines).toHaveLength(10);
    expect(lines.find((l) => l.startsWith('etcd-restore'))).toMatch(
      /^etcd-restore\s+v1\.31-1node\s+hard\s+45m\s+Restore etcd from a snapshot$/,
    );
  });

  it('prints JSON with --json', async () => {
    const r = await run('--config', configFile(SHIPPED_LABS), 'labs', 'list', '--json');
    expect(r.exitCode).toBe(0);
    const labs = JSON.parse(r.stdout) as { id: string; flavor: string; points: number }[];
    expect(labs.map((l) => l.id)).toContain('coredns-broken');
    expect(labs.find((l) => l.id === 'coredns-broken')).toMatchObject({
      flavor: 'v1.31-1node',
      points: 3,
    });
  });

  it('lists the good labs of a folder with problems, and exits 1', async () => {
    const r = await run(
      '--config',
      configFile(SHIPPED_LABS),
      'labs',
      'list',
      join(FIXTURES, 'duplicates'),
    );
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/^alpha\s+v1\.31-1node/m);
    expect(r.stderr).toContain('2 problem(s)');
  });
});

describe('help', () => {
  it.each([['validate'], ['list']])('labs %s --help describes the command', async (name) => {
    const r = await run('labs', name, '--help');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`Usage: labvirt labs ${name}`);
    // Commander wraps long lines: compare with the whitespace folded.
    expect(r.stdout.replace(/\s+/g, ' ')).toContain(
      'labs folder, or one lab folder (default: labsDir from the configuration)',
    );
  });
});
