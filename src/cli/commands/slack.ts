import type { Command } from 'commander';
import { configFileOf } from './config.js';

/** `labvirt slack manifest`: the Slack app manifest for this installation. */
export function registerSlackCommands(program: Command): void {
  const slack = program.command('slack').description('the Slack app');
  slack
    .command('manifest')
    .description(
      "print the Slack app manifest for this installation (its command, and its lab ids in the command's usage hint)",
    )
    .option('--socket', 'Socket Mode (default: slack.mode from the configuration)')
    .option('--url <url>', "labvirt's public address for HTTP mode (default: api.publicUrl)")
    .addHelpText(
      'after',
      '\nExample:\n  labvirt slack manifest --url https://labvirt.example.org > manifest.yaml',
    )
    .action(async (opts: { socket?: boolean; url?: string }, cmd: Command) => {
      // Loaded here, not at the top: `labvirt --help` must stay light (issue #12).
      const [{ loadConfig }, { loadLabs }, { renderManifest }] = await Promise.all([
        import('../../config/index.js'),
        import('../../labs/index.js'),
        import('../../slack/index.js'),
      ]);
      const config = loadConfig({ file: configFileOf(cmd) });
      const { labs } = await loadLabs(config.labsDir, { flavors: Object.keys(config.flavors) });
      process.stdout.write(
        renderManifest({
          mode: opts.socket ? 'socket' : config.slack.mode,
          publicUrl: opts.url ?? config.api.publicUrl,
          command: config.slack.command,
          labIds: labs.map((l) => l.id),
        }),
      );
    });
}
