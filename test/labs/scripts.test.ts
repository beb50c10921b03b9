import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { loadLabs, type Lab, type LabCheck } from '../../src/labs/index.js';
import { SHIPPED_LABS, nodesFor, runInSandbox, runSteps } from './helpers.js';

const SHELLCHECK = '/usr/bin/shellcheck';
const flavors = Object.keys(loadConfig({ env: {} }).flavors);
const { labs } = await loadLabs(SHIPPED_LABS, { flavors });
const roots: string[] = [];

afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function scriptsOf(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.sh'))
    .map((e) => join(e.parentPath, e.name));
}

describe('lab scripts', () => {
  it('shellcheck is installed', () => {
    if (!existsSync(SHELLCHECK)) {
      throw new Error(
        `${SHELLCHECK} is missing: install ShellCheck (apt-get install shellcheck) to test lab scripts; CI installs it`,
      );
    }
  });

  it.each(labs.map((l) => [l.id, l] as const))('%s: every script passes shellcheck', (_id, lab) => {
    expect(
      existsSync(SHELLCHECK),
      `${SHELLCHECK} is missing: install ShellCheck (CI installs it)`,
    ).toBe(true);
    const files = scriptsOf(lab.dir);
    expect(files.length).toBeGreaterThan(0);
    const r = spawnSync(SHELLCHECK, ['--shell=bash', '--severity=style', ...files], {
      encoding: 'utf8',
    });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it.each(labs.map((l) => [l.id, l] as const))('%s: every script is strict bash', (_id, lab) => {
    const all = [
      lab.setup,
      lab.prepare,
      lab.checks,
      lab.solve,
      lab.wrongFixes,
      ...Object.values(lab.sim ?? {}),
    ].flat();
    for (const s of all) {
      expect(s.content, s.file).toMatch(/^#!\/bin\/bash\n/);
      expect(s.content, s.file).toContain('set -euo pipefail');
    }
    for (const s of Object.values(lab.sim ?? {}).flat()) {
      // Sim scripts use the guest's real paths (the sandbox is the guest's /).
      expect(s.content, s.file).not.toContain('LABVIRT_GUEST_ROOT');
    }
  });
});

/** Runs each check on its nodes; a check passes when it passes on every node. */
async function grade(lab: Lab, checks: LabCheck[], root: string) {
  const out: { name: string; passed: boolean; fails: string[] }[] = [];
  for (const check of checks) {
    let passed = true;
    const fails: string[] = [];
    for (const node of nodesFor(check.node, lab.nodes)) {
      const r = await runInSandbox(check, join(root, node));
      if (r.exitCode !== 0) passed = false;
      fails.push(...r.stdout.split('\n').filter((l) => l.startsWith('FAIL:')));
    }
    out.push({ name: check.name, passed, fails });
  }
  return out;
}

/**
 * Labs whose sim steps ask the student cluster (`kubectl` on the control
 * plane, against Nodes that follow the workers' kubelet and containerd
 * files): bare sandboxes have no API server, so these run end to end on the
 * simulated cluster only (test/sessions/labtest.test.ts runs every lab so).
 */
const needsStudentCluster = (lab: Lab) =>
  Object.values(lab.sim ?? {})
    .flat()
    .some((s) => /^\s*(kubectl|[^#]*\$\(kubectl) /m.test(s.content));
const onBareSandboxes = labs.filter((l) => !needsStudentCluster(l));

describe('sim variants', () => {
  it('run on bare sandboxes except the labs that ask the student cluster', () => {
    expect(labs.filter(needsStudentCluster).map((l) => l.id)).toEqual([
      'containerd-socket',
      'kubelet-down-worker',
    ]);
  });

  it.each(onBareSandboxes.map((l) => [l.id, l] as const))(
    '%s: setup → checks fail with FAIL: → solve → pass → solve again → still pass',
    async (_id, lab) => {
      const root = mkdtempSync(join(tmpdir(), `labvirt-sim-${lab.id}-`));
      roots.push(root);
      const sim = {
        setup: lab.setup,
        prepare: lab.prepare,
        checks: lab.checks,
        solve: lab.solve,
        ...lab.sim,
      };

      await runSteps(lab, sim.setup, root);
      await runSteps(lab, sim.setup, root); // setup twice is harmless
      await runSteps(lab, sim.prepare, root);
      const before = await grade(lab, sim.checks, root);
      for (const c of before) {
        expect(c.passed, `${c.name} must fail right after setup`).toBe(false);
        expect(c.fails.length, `${c.name} must say why with a FAIL: line`).toBeGreaterThan(0);
        for (const line of c.fails) expect(line.length).toBeGreaterThan('FAIL: '.length + 10);
      }

      await runSteps(lab, sim.solve, root);
      const after = await grade(lab, sim.checks, root);
      expect(after.filter((c) => !c.passed)).toEqual([]);
      expect(after.flatMap((c) => c.fails)).toEqual([]);

      await runSteps(lab, sim.solve, root);
      const again = await grade(lab, sim.checks, root);
      expect(again.filter((c) => !c.passed)).toEqual([]);

      // Everything the scripts wrote stayed inside the sandboxes.
      const nodes = readdirSync(root);
      expect(nodes.every((n) => ['control-plane', 'worker-1', 'worker-2'].includes(n))).toBe(true);
    },
  );

  const withWrongFixes = onBareSandboxes.flatMap((l) =>
    (l.sim?.wrongFixes ?? []).map((w) => [`${l.id}/${w.name}`, l, w] as const),
  );
  it.each(withWrongFixes)(
    '%s: the sim checks refuse the wrong fix, with a FAIL: line',
    async (_name, lab, wrong) => {
      const root = mkdtempSync(join(tmpdir(), `labvirt-sim-wrong-${lab.id}-`));
      roots.push(root);
      const sim = lab.sim!;
      await runSteps(lab, sim.setup, root);
      await runSteps(lab, sim.prepare, root);
      await runSteps(lab, [wrong], root);
      const result = await grade(lab, sim.checks, root);
      expect(result.some((c) => !c.passed)).toBe(true);
      for (const c of result.filter((r) => !r.passed)) expect(c.fails.length).toBeGreaterThan(0);
    },
  );

  it('partial credit: fixing one of two faults passes one check only', async () => {
    const lab = labs.find((l) => l.id === 'coredns-broken')!;
    const root = mkdtempSync(join(tmpdir(), 'labvirt-sim-partial-'));
    roots.push(root);
    await runSteps(lab, lab.sim!.setup!, root);
    // The student scales CoreDNS up but leaves the Corefile broken.
    const scaleUp = {
      ...lab.sim!.setup![0]!,
      content: '#!/bin/bash\necho 2 >/etc/sim/coredns/replicas\n',
    };
    await runSteps(lab, [scaleUp], root);
    const result = await grade(lab, lab.sim!.checks!, root);
    expect(result.map((c) => [c.name, c.passed])).toEqual([
      ['coredns-running', true],
      ['dns-resolves', false],
    ]);
    const points = lab
      .sim!.checks!.filter((_, i) => result[i]!.passed)
      .reduce((n, c) => n + c.points, 0);
    expect(points).toBe(1);
    expect(result[1]!.fails[0]).toContain('does not resolve');
  });
});
