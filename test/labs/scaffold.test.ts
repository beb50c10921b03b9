import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ScaffoldError, scaffoldLab, validateLabs } from '../../src/labs/index.js';
import { formatLabTestReport, testLab } from '../../src/sessions/labtest.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const flavors = Object.keys(loadConfig({ env: {} }).flavors);
let stack: TestStack | undefined;
afterAll(async () => stack?.stop());

describe('labvirt labs new', () => {
  it.each([
    ['1.31', 1],
    ['1.30', 3],
  ] as const)('a fresh %s %i-node lab passes validate unedited', async (kubernetes, nodes) => {
    const labsDir = mkdtempSync(join(tmpdir(), 'labvirt-scaffold-'));
    const files = await scaffoldLab({ id: 'service-selector', kubernetes, nodes, labsDir });
    expect(files).toContain('sim/wrong-relabel-pods.sh');
    const dir = join(labsDir, 'service-selector');
    for (const f of files.filter((name) => name.endsWith('.sh'))) {
      expect(statSync(join(dir, f)).mode & 0o111, f).toBe(0o111);
    }
    // Scripts read as an author would type them: a printf's newline is `\n`, not a line break.
    for (const f of files.filter((name) => name.endsWith('.sh'))) {
      expect(readFileSync(join(dir, f), 'utf8'), f).not.toMatch(/printf '[^']*\n[^']*'/);
    }
    const yaml = readFileSync(join(dir, 'lab.yaml'), 'utf8');
    expect(yaml).toContain(`flavor: { kubernetes: '${kubernetes}', nodes: ${nodes} }`);
    // Every top-level field is there, with a comment above it.
    for (const field of [
      'id',
      'title',
      'description',
      'difficulty',
      'flavor',
      'timeLimitMinutes',
      'hints',
      'tags',
      'setup',
      'prepare',
      'checks',
      'solve',
      'wrongFixes',
      'sim',
    ]) {
      expect(yaml, field).toMatch(new RegExp(`#[^\\n]*\\n${field}:`));
    }
    const r = await validateLabs(labsDir, { flavors });
    expect(r.problems).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.labs.map((l) => l.id)).toEqual(['service-selector']);
    // Its embedded manifests were validated strictly.
    expect(r.notes).toContain('embedded Kubernetes YAML: 3 object(s) validated strictly');
  });

  it('refuses a bad id and an existing folder, and overwrites nothing', async () => {
    const labsDir = mkdtempSync(join(tmpdir(), 'labvirt-scaffold-'));
    await expect(
      scaffoldLab({ id: 'Bad_Id', kubernetes: '1.31', nodes: 1, labsDir }),
    ).rejects.toThrow(ScaffoldError);
    await scaffoldLab({ id: 'twice', kubernetes: '1.31', nodes: 1, labsDir });
    await expect(
      scaffoldLab({ id: 'twice', kubernetes: '1.31', nodes: 1, labsDir }),
    ).rejects.toThrow(/already exists/);
  });

  it('a fresh lab passes labs test --sim unedited, wrong fix included', async () => {
    const labsDir = mkdtempSync(join(tmpdir(), 'labvirt-scaffold-'));
    await scaffoldLab({ id: 'fresh', kubernetes: '1.31', nodes: 1, labsDir });
    stack = await startTestStack({
      overrides: {
        labsDir,
        flavors: {
          'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 2, maxTotal: 4 },
        },
      },
      roles: { api: false, gateway: false },
    });
    const report = await testLab(stack.labvirt, 'fresh', { timeoutMs: 90_000 });
    expect(report.ok, formatLabTestReport(report)).toBe(true);
    expect(report.variant).toBe('sim');
    expect(report.steps.map((s) => s.name)).toContain(
      'wrong fix relabel-pods: the checks still fail after "relabel the pods to match the Service instead of fixing it"',
    );
  }, 300_000); // generous: on a loaded machine each claim may wait for an env to boot
});
