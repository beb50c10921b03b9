import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { validateLabs, type Lab, type LabCheck } from '../../src/labs/index.js';
import { FIXTURES, nodesFor, runInSandbox, runSteps } from './helpers.js';

const GUIDE = join(import.meta.dirname, '..', '..', 'docs', 'writing-labs.md');
const EXAMPLE = join(FIXTURES, 'guide', 'pinned-web');
const flavors = Object.keys(loadConfig({ env: {} }).flavors);

async function grade(lab: Lab, checks: LabCheck[], root: string) {
  const out: { name: string; passed: boolean; fails: number }[] = [];
  for (const check of checks) {
    let passed = true;
    let fails = 0;
    for (const node of nodesFor(check.node, lab.nodes)) {
      const r = await runInSandbox(check, join(root, node));
      if (r.exitCode !== 0) passed = false;
      fails += r.stdout.split('\n').filter((l) => l.startsWith('FAIL:')).length;
    }
    out.push({ name: check.name, passed, fails });
  }
  return out;
}

describe('the 3-node example of docs/writing-labs.md', () => {
  it('is in the guide verbatim, file by file', () => {
    const guide = readFileSync(GUIDE, 'utf8');
    const files = readdirSync(EXAMPLE, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => relative(EXAMPLE, join(e.parentPath, e.name)));
    expect(files).toHaveLength(15);
    for (const file of files) {
      const lang = file.endsWith('.yaml') ? 'yaml' : 'bash';
      const content = readFileSync(join(EXAMPLE, file), 'utf8');
      expect(guide, file).toContain(`\`pinned-web/${file}\`\n\n\`\`\`${lang}\n${content}\`\`\``);
    }
  });

  it('validates with no problem and no warning', async () => {
    const r = await validateLabs(join(FIXTURES, 'guide'), { flavors });
    expect(r.problems).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.labs.map((l) => [l.id, l.flavor])).toEqual([['pinned-web', 'v1.30-3node']]);
  });

  it('its sim variant fails after setup, passes after solve, refuses the wrong fix', async () => {
    const { labs } = await validateLabs(join(FIXTURES, 'guide'), { flavors, shellcheck: false });
    const lab = labs[0]!;
    const sim = lab.sim!;
    const root = mkdtempSync(join(tmpdir(), 'labvirt-guide-'));
    await runSteps(lab, sim.setup, root);
    const before = await grade(lab, sim.checks, root);
    expect(before.map((c) => [c.name, c.passed])).toEqual([
      ['web-on-ssd', false],
      ['data-dir', false],
    ]);
    expect(before.every((c) => c.fails > 0)).toBe(true);
    await runSteps(lab, sim.solve, root);
    await runSteps(lab, sim.solve, root);
    expect((await grade(lab, sim.checks, root)).every((c) => c.passed)).toBe(true);

    const fresh = mkdtempSync(join(tmpdir(), 'labvirt-guide-'));
    await runSteps(lab, sim.setup, fresh);
    await runSteps(lab, sim.wrongFixes, fresh);
    const wrong = await grade(lab, sim.checks, fresh);
    expect(wrong.find((c) => c.name === 'web-on-ssd')).toMatchObject({ passed: false, fails: 1 });
  });
});
