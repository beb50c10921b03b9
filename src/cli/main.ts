import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/index.js';
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
    .configureHelp({ sortSubcommands: true });
  registerCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exitCode = 2;
      return;
    }
    console.error(`labvirt: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
