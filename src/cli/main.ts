import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/index.js';

function packageVersion(): string {
  // src/cli/main.ts and dist/cli/main.js both sit two levels below package.json.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** Builds the `labvirt` program; exported so tests can drive it in-process. */
export function buildProgram(): Command {
  const program = new Command('labvirt')
    .description('Hands-on Kubernetes labs on KubeVirt')
    .version(packageVersion(), '-V, --version', 'print the labvirt version')
    .option('-c, --config <file>', 'configuration file (YAML); default $LABVIRT_CONFIG')
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: true })
    // Before the subcommands exist, so they inherit it: usage errors reach main() as
    // CommanderErrors instead of exiting the process with commander's own code.
    .exitOverride();
  registerCommands(program);
  return program;
}

/**
 * A reader that goes away (`labvirt render | head`) closes our stdout: end
 * quietly, as Unix tools do, instead of crashing on the unhandled EPIPE.
 */
function endQuietlyWhenOutputCloses(): void {
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(process.exitCode ?? 0);
    });
}

export async function main(argv: string[]): Promise<void> {
  endQuietlyWhenOutputCloses();
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander's own usage errors (exit 1) are 2, as documented; commands'
      // own codes (3: a check not passed) and --help/--version (0) stay.
      const usage = err.code.startsWith('commander.') && err.exitCode === 1;
      process.exitCode = usage ? 2 : err.exitCode;
      return;
    }
    // Loaded only now: `--help` and client commands must not pay for the config schema.
    const { ConfigError } = await import('../config/index.js');
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exitCode = 2;
      return;
    }
    console.error(`labvirt: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
