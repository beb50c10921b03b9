import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLabs } from '../../src/labs/index.js';
import { formatLabTestReport, testLab } from '../../src/sessions/labtest.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const LABS = join(import.meta.dirname, '..', '..', 'labs');
const FLAVORS = {
  'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 1, maxTotal: 3 },
  'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 1, maxTotal: 3 },
};
const { labs } = await loadLabs(LABS, { flavors: Object.keys(FLAVORS) });

describe('every shipped lab, end to end on the simulated cluster (labvirt labs test)', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({
      overrides: { labsDir: LABS, flavors: FLAVORS },
      roles: { api: false, gateway: false },
    });
  }, 60_000);
  afterAll(async () => stack?.stop());

  it('ships at least 8 labs', () => {
    expect(labs.length).toBeGreaterThanOrEqual(8);
  });

  it('every shipped lab tries at least one wrong fix, in both variants', () => {
    for (const lab of labs) {
      expect(lab.wrongFixes.length, lab.id).toBeGreaterThan(0);
      expect(
        lab.sim?.wrongFixes.map((w) => w.name),
        lab.id,
      ).toEqual(lab.wrongFixes.map((w) => w.name));
    }
  });

  it.each(labs.map((l) => l.id))(
    '%s: check fails after setup, passes after solve, solve is idempotent, wrong fixes are refused',
    async (id) => {
      const report = await testLab(stack.labvirt, id, { timeoutMs: 60_000 });
      expect(report.ok, formatLabTestReport(report)).toBe(true);
      expect(report.variant).toBe('sim');
      const lab = labs.find((l) => l.id === id)!;
      expect(report.steps.map((s) => s.name)).toEqual([
        'claim an env and run setup',
        'check fails right after setup',
        'solve',
        'check passes after solve',
        'solve again and check again (idempotent)',
        'tear down',
        ...lab.sim!.wrongFixes.flatMap((w) => [
          `wrong fix ${w.name}: claim an env and run setup`,
          `wrong fix ${w.name}: the checks still fail after "${w.description}"`,
          `wrong fix ${w.name}: tear down`,
        ]),
      ]);
    },
    // Claims, setup, solve and the wrong fixes, on a shared machine; the
    // worker labs also wait for the node controller's heartbeat (as on a
    // real cluster) before and after the fix.
    180_000,
  );

  it('reports a lab whose check passes without a fix as broken', async () => {
    const stack2 = await startTestStack({
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 2 },
          'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
        },
      },
      roles: { api: false, gateway: false },
    });
    try {
      // fixture-one's check fails after setup; solving first makes the
      // "must fail after setup" step catch a check that passes too early.
      const ctx = stack2.labvirt.context;
      const lab = ctx.labs.get('fixture-one')!;
      (lab as { setup: unknown }).setup = lab.solve;
      const report = await testLab(stack2.labvirt, 'fixture-one', { timeoutMs: 60_000 });
      expect(report.ok).toBe(false);
      expect(report.steps.find((s) => !s.ok)?.name).toBe('check fails right after setup');
      expect(report.steps.at(-1)?.name).toBe('tear down');
    } finally {
      await stack2.stop();
    }
  }, 90_000);
});
