import { join } from 'node:path';
import { shownPath } from './load.js';
import { problem } from './problems.js';
import type { Lab, LabCheck, LabProblem } from './types.js';

/**
 * Static comparison of a lab's real and sim variants. The loader already
 * refuses sim checks whose names or points differ; this warns about what
 * makes the simulator test something else than the real lab: a check that
 * runs on another node or as another user, checks in another order, a
 * wrong fix that only one variant tries.
 */
export function compareRealAndSim(lab: Lab): LabProblem[] {
  const yamlFile = shownPath(join(lab.dir, 'lab.yaml'));
  if (!lab.sim) {
    return [
      problem(
        yamlFile,
        'sim',
        'the lab has no sim variant: `labvirt labs test --sim` and `labvirt dev` cannot run it',
        'add a `sim` section (see "Sim variants" in docs/writing-labs.md)',
      ),
    ];
  }
  const out: LabProblem[] = [];
  const simByName = new Map(lab.sim.checks.map((c, i) => [c.name, { c, i }]));
  lab.checks.forEach((real, i) => {
    const found = simByName.get(real.name);
    if (!found) return;
    const { c: sim, i: j } = found;
    for (const field of ['node', 'user'] as const) {
      if (sim[field] !== real[field]) {
        out.push(
          problem(
            yamlFile,
            `sim.checks.${j}.${field}`,
            `sim check \`${sim.name}\` runs ${field === 'node' ? 'on' : 'as'} ${sim[field]}, the real one ${field === 'node' ? 'on' : 'as'} ${real[field]}`,
            field === 'node'
              ? `give it node: ${real.node} and make the sim's setup write the files it reads there`
              : `give it user: ${real.user}`,
          ),
        );
      }
    }
    if (j !== i) {
      out.push(
        problem(
          yamlFile,
          `sim.checks.${j}`,
          `sim check \`${sim.name}\` is number ${j + 1}, the real one number ${i + 1}`,
          'list the sim checks in the order of the real ones (students see results in that order)',
        ),
      );
    }
  });
  const realFixes = new Set(lab.wrongFixes.map((w) => w.name));
  const simFixes = new Set(lab.sim.wrongFixes.map((w) => w.name));
  for (const name of realFixes) {
    if (!simFixes.has(name)) {
      out.push(
        problem(
          yamlFile,
          'sim.wrongFixes',
          `the wrong fix \`${name}\` has no sim variant: \`labvirt labs test --sim\` does not try it`,
          `add a sim wrong fix named ${name} that makes the same shortcut on the sim's files`,
        ),
      );
    }
  }
  for (const name of simFixes) {
    if (!realFixes.has(name)) {
      out.push(
        problem(
          yamlFile,
          'wrongFixes',
          `the sim wrong fix \`${name}\` has no real variant: a real cluster never tries it`,
          `add a wrong fix named ${name} to \`wrongFixes\``,
        ),
      );
    }
  }
  return out;
}

/**
 * A check that never prints `FAIL:` is a warning: a student who fails it
 * reads only "not solved yet", and `labvirt labs test` fails such a check
 * when it fails.
 */
export function silentCheckWarnings(lab: Lab): LabProblem[] {
  const all: LabCheck[] = [...lab.checks, ...(lab.sim?.checks ?? [])];
  return all
    .filter((check) => !check.content.includes('FAIL:'))
    .map((check) => {
      const shown = shownPath(join(lab.dir, '..', check.file));
      return problem(
        shown,
        '',
        `check \`${check.name}\` never prints a \`FAIL:\` line: a student who fails it reads only "${check.description}: not solved yet"`,
        'print `echo "FAIL: <what is wrong and where to look>"` before each non-zero exit',
      );
    });
}
