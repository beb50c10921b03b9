import type { Command } from 'commander';
import type { Lab } from '../../labs/index.js';
import { configFileOf } from './config.js';

/** Loaded when a command runs, not for `--help` or the client commands. */
async function modules() {
  const [{ loadConfig }, { loadLabs, formatProblems }] = await Promise.all([
    import('../../config/index.js'),
    import('../../labs/index.js'),
  ]);
  return { loadConfig, loadLabs, formatProblems };
}

/** `labvirt labs validate|list`: check lab folders and show what is there. */
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
    .action(async (dir: string | undefined, _opts, cmd: Command) => {
      const { loadConfig, loadLabs, formatProblems } = await modules();
      const config = loadConfig({ file: configFileOf(cmd) });
      const folder = dir ?? config.labsDir;
      const { labs: loaded, problems } = await loadLabs(folder, {
        flavors: Object.keys(config.flavors),
        maxSessionMinutes: config.sessions.maxMinutes,
      });
      if (problems.length > 0) {
        console.error(formatProblems(problems));
        console.error(`${problems.length} problem${problems.length === 1 ? '' : 's'} in ${folder}`);
        process.exitCode = 1;
        return;
      }
      if (loaded.length === 0) {
        console.error(
          `no labs in ${folder}: a lab is a folder holding lab.yaml and its scripts (see the lab authoring guide)`,
        );
        process.exitCode = 1;
        return;
      }
      const checks = loaded.reduce((n, l) => n + l.checks.length, 0);
      console.log(
        `${loaded.length} lab${loaded.length === 1 ? '' : 's'} valid in ${folder} (${checks} checks)`,
      );
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
