import type { Command } from 'commander';

/** Reads the global `--config` option from any subcommand. */
export function configFileOf(cmd: Command): string | undefined {
  return cmd.optsWithGlobals<{ config?: string }>().config;
}

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('show')
    .description('print the effective configuration (file + environment + defaults) as YAML')
    .action(async (_opts, cmd: Command) => {
      const [{ loadConfig, redactConfig }, { stringify }] = await Promise.all([
        import('../../config/index.js'),
        import('yaml'),
      ]);
      const cfg = loadConfig({ file: configFileOf(cmd) });
      // Credentials in URLs (redis://user:password@…) are shown as ***.
      process.stdout.write(stringify(redactConfig(cfg)));
    });
  config
    .command('check')
    .description('validate the configuration and list every problem')
    .action(async (_opts, cmd: Command) => {
      const { loadConfig } = await import('../../config/index.js');
      loadConfig({ file: configFileOf(cmd) });
      console.log('configuration is valid');
    });
}
