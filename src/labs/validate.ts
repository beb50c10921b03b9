import { compareRealAndSim, silentCheckWarnings } from './compare.js';
import { join, sep } from 'node:path';
import { loadLabs, shownPath } from './load.js';
import { embeddedManifestProblems } from './manifests.js';
import { problem } from './problems.js';
import { findShellcheck, shellcheckProblems } from './shellcheck.js';
import type { Lab, LabProblem, LoadLabsOptions } from './types.js';

export interface ValidateLabsOptions extends LoadLabsOptions {
  /**
   * Path of shellcheck, or false to skip it. Default: `shellcheck` on PATH
   * when installed.
   */
  shellcheck?: string | false;
}

export interface LabsValidation {
  /** Labs without problems. */
  labs: Lab[];
  /** Everything that must be fixed (the command exits 1). */
  problems: LabProblem[];
  /** Disagreements worth a look that do not stop a lab from loading. */
  warnings: LabProblem[];
  /** What was and was not checked, e.g. "shellcheck is not installed". */
  notes: string[];
}

/**
 * Everything `labvirt labs validate` checks, in one pass: the loader's shape,
 * cross-field and file checks, then shellcheck on every script read, strict
 * validation of Kubernetes YAML embedded in scripts, the static comparison
 * of real and sim checks, and what a check's text gives away.
 */
export async function validateLabs(
  dir: string,
  options: ValidateLabsOptions,
): Promise<LabsValidation> {
  const { labs, problems, files } = await loadLabs(dir, options);
  const warnings: LabProblem[] = [];
  const notes: string[] = [];
  const shellcheck = options.shellcheck ?? findShellcheck();
  if (shellcheck) {
    problems.push(...(await shellcheckProblems(shellcheck, files)));
    notes.push(`shellcheck: ${files.length} script(s) checked`);
  } else if (options.shellcheck === undefined) {
    notes.push('shellcheck is not installed: scripts were not linted (apt-get install shellcheck)');
  }
  const manifests = embeddedManifestProblems(files);
  problems.push(...manifests.problems);
  notes.push(
    `embedded Kubernetes YAML: ${manifests.checked} object(s) validated strictly` +
      (manifests.skipped > 0
        ? `, ${manifests.skipped} skipped (a kind without a schema here, or a here-document the shell expands)`
        : ''),
  );
  for (const lab of labs) {
    warnings.push(
      ...missingSolveWarnings(lab),
      ...silentCheckWarnings(lab),
      ...compareRealAndSim(lab),
    );
  }
  const inside = (lab: Lab) => `${shownPath(lab.dir)}${sep}`;
  return {
    labs: labs.filter((lab) => !problems.some((p) => p.file.startsWith(inside(lab)))),
    problems,
    warnings,
    notes,
  };
}

/**
 * A lab without a real `solve` cannot be proven on a real cluster:
 * `labvirt labs test --real` has nothing to show that its checks pass after
 * a correct fix (the sim variant proves labvirt's plumbing, not the scenario).
 */
function missingSolveWarnings(lab: Lab): LabProblem[] {
  if (lab.solve.length > 0) return [];
  return [
    problem(
      shownPath(join(lab.dir, 'lab.yaml')),
      'solve',
      'the lab has no real `solve` script: nothing shows on a real cluster that its checks pass after a correct fix',
      'add `solve: [{ node: control-plane, script: solve.sh }]` that fixes the scenario the way a student would',
    ),
  ];
}
