import { chmodSync, cpSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { findShellcheck, formatProblems, validateLabs } from '../../src/labs/index.js';
import { FIXTURES, SHIPPED_LABS } from './helpers.js';

const flavors = Object.keys(loadConfig({ env: {} }).flavors);
const REPO = resolve(import.meta.dirname, '..', '..');

/** fixtures/faults copied so setup.sh can lose its executable bit (git keeps modes poorly). */
const FAULTS = join(mkdtempSync(join(tmpdir(), 'labvirt-faults-')), 'faults');
beforeAll(() => {
  cpSync(join(FIXTURES, 'faults'), FAULTS, { recursive: true });
  chmodSync(join(FAULTS, 'five-faults', 'setup.sh'), 0o644);
});

describe('labs validate lists every problem in one run', () => {
  it('finds all planted faults of five-faults at once', async () => {
    expect(findShellcheck(), 'shellcheck must be installed (CI installs it)').toBeDefined();
    const { labs, problems } = await validateLabs(FAULTS, { flavors });
    expect(labs).toEqual([]);
    const text = formatProblems(problems);
    const at = (file: string) => join(FAULTS, 'five-faults', file);
    // shape
    expect(text).toContain(
      `${at('lab.yaml')} (timelimitMinutes): unknown field \`timelimitMinutes\``,
    );
    // cross-field
    expect(text).toContain('sim check `fixed` is worth 1 points, the real one 2');
    // files
    expect(text).toContain('script file `five-faults/check-missing.sh` does not exist');
    // modes
    expect(text).toContain(`fix: run: chmod +x ${at('setup.sh')}`);
    // shellcheck, at the line
    expect(text).toContain(`${at('check.sh')}:4: shellcheck SC2086`);
    // embedded Kubernetes YAML, strictly
    expect(text).toContain(
      `${at('setup.sh')}:11: Pod web: spec.contianers: unknown field "contianers"`,
    );
    // a check that passes without a fix
    expect(text).toContain(`${at('early-exit.sh')}:2: check \`early\` exits 0 at line 2`);
  });

  it('gives fix paths that work from the current directory', async () => {
    const { problems } = await validateLabs(join(FIXTURES, 'broken'), { flavors });
    const chmod = problems.find((p) => p.suggestion.startsWith('run: chmod +x '))!;
    const path = chmod.suggestion.slice('run: chmod +x '.length);
    // The repository is the tests' working directory: the path is relative to it.
    expect(relative(REPO, process.cwd())).toBe('');
    expect(path).toBe('test/labs/fixtures/broken/not-executable/setup.sh');
    expect(existsSync(path)).toBe(true);
  });

  it('names only documents that exist', async () => {
    const broken = await validateLabs(join(FIXTURES, 'broken'), { flavors });
    const faults = await validateLabs(FAULTS, { flavors });
    const text = formatProblems([...broken.problems, ...faults.problems]);
    expect(text).not.toMatch(/authoring guide/);
    const docs = [...text.matchAll(/\bdocs\/[\w-]+\.md\b/g)].map((m) => m[0]);
    for (const doc of new Set(docs)) expect(existsSync(join(REPO, doc)), doc).toBe(true);
  });

  it('says when shellcheck did not run', async () => {
    const r = await validateLabs(join(FIXTURES, 'duplicates', 'alpha'), {
      flavors,
      shellcheck: false,
    });
    expect(r.problems).toEqual([]);
    expect(r.notes.join('\n')).not.toContain('shellcheck:');
    const withShellcheck = await validateLabs(join(FIXTURES, 'duplicates', 'alpha'), { flavors });
    expect(withShellcheck.notes).toContain('shellcheck: 2 script(s) checked');
  });
});

describe('static comparison of real and sim checks', () => {
  it('warns where the sim variant drifted from the real lab', async () => {
    const { labs, problems, warnings } = await validateLabs(join(FIXTURES, 'mismatch'), {
      flavors,
    });
    expect(problems).toEqual([]);
    expect(labs.map((l) => l.id)).toEqual(['drifted']);
    expect(warnings.map((w) => `${w.field}: ${w.message}`)).toEqual([
      'sim.checks.1.node: sim check `node-ready` runs on worker-1, the real one on control-plane',
      'sim.checks.1: sim check `node-ready` is number 2, the real one number 1',
      'sim.checks.0.user: sim check `kubelet-enabled` runs as student, the real one as root',
      'sim.checks.0: sim check `kubelet-enabled` is number 1, the real one number 2',
      'sim.wrongFixes: the wrong fix `relabel` has no sim variant: `labvirt labs test --sim` does not try it',
    ]);
  });

  it('warns when a lab has no real solve, and not when it has one', async () => {
    const { labs, problems, warnings } = await validateLabs(join(FIXTURES, 'nosolve'), {
      flavors,
    });
    expect(problems).toEqual([]);
    expect(labs.map((l) => l.id)).toEqual(['unsolved']);
    expect(
      warnings.filter((w) => w.field === 'solve').map((w) => `${w.file} ${w.message}`),
    ).toEqual([
      `${relative(process.cwd(), join(FIXTURES, 'nosolve', 'unsolved', 'lab.yaml'))} the lab has no real \`solve\` script: nothing shows on a real cluster that its checks pass after a correct fix`,
    ]);
    const solved = await validateLabs(join(FIXTURES, 'mismatch'), { flavors });
    expect(solved.warnings.some((w) => w.field === 'solve')).toBe(false);
  });

  it('the shipped labs have no problems and no warnings: every sim check runs where its real one does', async () => {
    const { labs, problems, warnings } = await validateLabs(SHIPPED_LABS, { flavors });
    expect(formatProblems(problems)).toBe('');
    expect(labs.length).toBeGreaterThanOrEqual(9);
    expect(warnings.map((w) => `${relative(SHIPPED_LABS, w.file)} ${w.field}`)).toEqual([]);
  });
});
