import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadConfig } from '../../config/index.js';

/** Reads the global `--config` option from any subcommand. */
export function configFileOf(cmd: Command): string | undefined {
  return cmd.optsWithGlobals<{ config?: string }>().config;
}

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('show')
    .description('print the effective configuration (file + environment + defaults) as YAML')
    .action((_opts, cmd: Command) => {
      const cfg = loadConfig({ file: configFileOf(cmd) });
      process.stdout.write(stringify(cfg));
    });
  config
    .command('check')
    .description('validate the configuration and list every problem')
    .action((_opts, cmd: Command) => {
      loadConfig({ file: configFileOf(cmd) });
      console.log('configuration is valid');
    });
}
