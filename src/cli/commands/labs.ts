import { join } from 'node:path';
import type { Command } from 'commander';
import type { Lab, LabsValidation } from '../../labs/index.js';
import { configFileOf } from './config.js';

/** `labvirt labs validate|list`: check lab folders and show what is there. */
/** Loaded when a command runs, not for `--help` or the client commands. */
async function modules() {
  const [{ loadConfig }, labs] = await Promise.all([
    import('../../config/index.js'),
    import('../../labs/index.js'),
  ]);
  return { loadConfig, ...labs };
}

export function registerLabsCommands(program: Command): void {
  const labs =
    program.commands.find((c) => c.name() === 'labs') ??
    program.command('labs').description('work with lab scenarios');

  labs
    .command('validate')
    .description(
      'check every lab under a folder (or the one lab in a lab folder) and list each problem with its fix',
    )
    .argument('[dir]', 'labs folder, or one lab folder (default: labsDir from the configuration)')
    .option('--no-shellcheck', 'do not run shellcheck on the scripts even when it is installed')
    .action(async (dir: string | undefined, opts: { shellcheck: boolean }, cmd: Command) => {
      const { loadConfig, validateLabs, formatProblems } = await modules();
      const config = loadConfig({ file: configFileOf(cmd) });
      const folder = dir ?? config.labsDir;
      const result = await validateLabs(folder, {
        flavors: Object.keys(config.flavors),
        maxSessionMinutes: config.sessions.maxMinutes,
        ...(opts.shellcheck ? {} : { shellcheck: false as const }),
      });
      process.exitCode = reportValidation(folder, result, formatProblems);
    });

  labs
    .command('new')
    .description(
      'write a small working lab (lab.yaml with every field commented, real and sim scripts, a wrong fix) to start from, then validate it',
    )
    .argument('<id>', 'the lab id and folder name (lowercase letters, digits and "-")')
    .requiredOption('--flavor <flavor>', 'a configured flavor, e.g. v1.31-1node')
    .option('--dir <dir>', 'labs folder to create it in (default: labsDir from the configuration)')
    .action(async (id: string, opts: { flavor: string; dir?: string }, cmd: Command) => {
      const { loadConfig, validateLabs, scaffoldLab, ScaffoldError, formatProblems } =
        await modules();
      const config = loadConfig({ file: configFileOf(cmd) });
      const flavor = config.flavors[opts.flavor];
      if (!flavor) {
        console.error(
          `unknown flavor ${opts.flavor}: use one of ${Object.keys(config.flavors).join(', ')} (the configuration's \`flavors\`)`,
        );
        process.exitCode = 1;
        return;
      }
      const labsDir = opts.dir ?? config.labsDir;
      let written: string[];
      try {
        written = await scaffoldLab({
          id,
          kubernetes: flavor.kubernetesVersion,
          nodes: flavor.nodes,
          labsDir,
        });
      } catch (err) {
        if (!(err instanceof ScaffoldError)) throw err;
        console.error(err.message);
        process.exitCode = 1;
        return;
      }
      const folder = join(labsDir, id);
      console.log(`wrote ${written.map((f) => join(folder, f)).join(', ')}`);
      const result = await validateLabs(folder, {
        flavors: Object.keys(config.flavors),
        maxSessionMinutes: config.sessions.maxMinutes,
      });
      process.exitCode = reportValidation(folder, result, formatProblems);
      if (process.exitCode === 0) {
        console.log(
          `next: edit ${folder}, then run \`labvirt labs validate ${folder}\` and \`labvirt labs test ${id} --sim\` (docs/writing-labs.md)`,
        );
      }
    });

  labs
    .command('list')
    .description('list the labs under a folder: id, flavor, difficulty, time limit, title')
    .argument('[dir]', 'labs folder, or one lab folder (default: labsDir from the configuration)')
    .option('--json', 'print the labs as JSON')
    .action(async (dir: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { loadConfig, loadLabs } = await modules();
      const config = loadConfig({ file: configFileOf(cmd) });
      const folder = dir ?? config.labsDir;
      const { labs: loaded, problems } = await loadLabs(folder, {
        flavors: Object.keys(config.flavors),
        maxSessionMinutes: config.sessions.maxMinutes,
      });
      if (problems.length > 0) {
        console.error(
          `${problems.length} problem(s) in ${folder}; those labs are not listed (run \`labvirt labs validate\`)`,
        );
        process.exitCode = 1;
      }
      if (opts.json) {
        console.log(JSON.stringify(loaded.map(summary), null, 2));
        return;
      }
      console.log(table(loaded));
    });
}

/** Prints problems, warnings and what was checked; returns the exit code. */
export function reportValidation(
  folder: string,
  result: LabsValidation,
  formatProblems: (problems: LabsValidation['problems']) => string,
): number {
  const { labs: valid, problems, warnings, notes } = result;
  if (warnings.length > 0) {
    console.error(
      formatProblems(warnings.map((w) => ({ ...w, message: `warning: ${w.message}` }))),
    );
  }
  for (const note of notes) console.log(`note: ${note}`);
  if (problems.length > 0) {
    console.error(formatProblems(problems));
    console.error(`${problems.length} problem${problems.length === 1 ? '' : 's'} in ${folder}`);
    return 1;
  }
  if (valid.length === 0) {
    console.error(
      `no labs in ${folder}: a lab is a folder holding lab.yaml and its scripts (\`labvirt labs new <id> --flavor <flavor>\` writes one; see docs/writing-labs.md)`,
    );
    return 1;
  }
  const checks = valid.reduce((n, l) => n + l.checks.length, 0);
  const warned =
    warnings.length > 0 ? `, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}` : '';
  console.log(
    `${valid.length} lab${valid.length === 1 ? '' : 's'} valid in ${folder} (${checks} checks${warned})`,
  );
  return 0;
}

function summary(lab: Lab) {
  return {
    id: lab.id,
    title: lab.title,
    flavor: lab.flavor,
    difficulty: lab.difficulty,
    timeLimitMinutes: lab.timeLimitMinutes,
    points: lab.totalPoints,
    checks: lab.checks.length,
    tags: lab.tags,
  };
}

function table(labs: Lab[]): string {
  const rows = [
    ['ID', 'FLAVOR', 'DIFFICULTY', 'TIME', 'TITLE'],
    ...labs.map((l) => [l.id, l.flavor, l.difficulty, `${l.timeLimitMinutes}m`, l.title]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '),
    )
    .join('\n');
}
