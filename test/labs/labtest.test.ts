import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLabTestReport, testLab } from '../../src/sessions/labtest.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { FIXTURES } from './helpers.js';

/**
 * `labvirt labs test` on fixture labs that are broken in the ways lab authors
 * break labs, end to end on the simulated cluster.
 */
let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack({
    overrides: {
      labsDir: join(FIXTURES, 'labtest'),
      flavors: {
        'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 2, maxTotal: 6 },
      },
    },
    roles: { api: false, gateway: false },
  });
}, 60_000);
afterAll(async () => stack?.stop());

const failedStep = (r: Awaited<ReturnType<typeof testLab>>) => r.steps.find((s) => !s.ok);

describe('labs test', () => {
  it('passes a good lab, says which scripts ran, keeps multi-line FAIL messages', async () => {
    const report = await testLab(stack.labvirt, 'good', { timeoutMs: 90_000 });
    const text = formatLabTestReport(report);
    expect(report.ok, text).toBe(true);
    expect(report.variant).toBe('sim');
    expect(report.steps.map((s) => s.name)).toEqual([
      'claim an env and run setup',
      'check fails right after setup',
      'solve',
      'check passes after solve',
      'solve again and check again (idempotent)',
      'tear down',
      'wrong fix relabel: claim an env and run setup',
      'wrong fix relabel: the checks still fail after "relabel the Deployment instead of fixing the Service"',
      'wrong fix relabel: tear down',
    ]);
    expect(text).toContain("PASS good (ran the lab's sim scripts; its real scripts did not run)");
    expect(text).toContain('      sim: good/sim/setup.sh');
    expect(text).toContain('      sim: good/sim/wrong-relabel.sh, good/sim/check.sh');
    // The FAIL: line and the indented lines under it are one message.
    expect(report.steps[1]!.detail).toContain(
      'selector-matches: the Service web selects wbe, not the pods of the Deployment web\n  objects in namespace default:\n    deployment/web\n    service/web',
    );
    // The wrong fix is refused with the check's own reason.
    expect(report.steps[7]!.detail).toContain(
      'selector-matches: the Service web selects wbe, not the pods of the Deployment web',
    );
  }, 300_000); // generous: on a loaded machine each claim may wait for an env to boot

  it('fails a lab whose check passes without a fix', async () => {
    const report = await testLab(stack.labvirt, 'passes-unfixed', { timeoutMs: 90_000 });
    expect(report.ok).toBe(false);
    expect(failedStep(report)).toMatchObject({
      name: 'check fails right after setup',
      detail: 'every check passes although nothing was fixed (1 points)',
    });
    expect(report.steps.at(-1)?.name).toBe('tear down');
  }, 300_000); // generous: on a loaded machine each claim may wait for an env to boot

  it('fails a lab whose failing check prints no FAIL: line', async () => {
    const report = await testLab(stack.labvirt, 'silent-check', { timeoutMs: 90_000 });
    expect(report.ok).toBe(false);
    expect(failedStep(report)?.name).toBe('check fails right after setup');
    expect(failedStep(report)?.detail).toBe(
      'check(s) selector-matches failed without printing a FAIL: line: the student would read only "not solved yet"',
    );
  }, 300_000); // generous: on a loaded machine each claim may wait for an env to boot

  it('fails a lab whose check lets a wrong fix through', async () => {
    const report = await testLab(stack.labvirt, 'missed-shortcut', { timeoutMs: 90_000 });
    expect(report.ok).toBe(false);
    // The reference solve works; only the shortcut is let through.
    expect(report.steps.slice(0, 6).every((s) => s.ok)).toBe(true);
    expect(failedStep(report)).toMatchObject({
      name: 'wrong fix bare-pod: the checks still fail after "add a bare pod that matches the selector"',
      detail:
        'the wrong fix "add a bare pod that matches the selector" passes every check (1 points): the checks must refuse this shortcut',
    });
    expect(report.steps.at(-1)?.name).toBe('wrong fix bare-pod: tear down');
  }, 300_000); // generous: on a loaded machine each claim may wait for an env to boot

  it('with labScripts standard (labs test --real) runs the real scripts and says so', async () => {
    // The student cluster of a sim control plane serves no apps/v1: the real
    // setup's Deployment fails there, which shows that the real script, not
    // its sim variant, ran.
    const real = await startTestStack({
      overrides: {
        labsDir: join(FIXTURES, 'labtest'),
        labScripts: 'standard',
        // As `labvirt labs test` does: the first failed setup ends the test.
        pool: { maxSetupMoves: 0 },
        flavors: {
          'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 1, maxTotal: 2 },
        },
      },
      roles: { api: false, gateway: false },
    });
    try {
      const report = await testLab(real.labvirt, 'good', { timeoutMs: 80_000 });
      expect(report.ok).toBe(false);
      expect(report.variant).toBe('real');
      const text = formatLabTestReport(report);
      expect(text).toContain("FAIL good (ran the lab's real scripts)");
      expect(text).toContain('      real: good/setup.sh');
      expect(failedStep(report)?.name).toBe('claim an env and run setup');
      expect(failedStep(report)?.detail).toMatch(/^session ended/);
    } finally {
      await real.stop();
    }
  }, 150_000);
});
