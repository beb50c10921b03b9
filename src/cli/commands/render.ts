import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadConfig } from '../../config/index.js';
import { generateEnvSecrets, renderEnvironment } from '../../kube/index.js';
import { generateKeyPair } from '../../ssh/index.js';
import { configFileOf } from './config.js';

/** `labvirt render`: print one whole environment as the host cluster would receive it. */
export function registerRenderCommand(program: Command): void {
  program
    .command('render')
    .description('print every object of one environment as multi-document YAML, in creation order')
    .requiredOption('--flavor <flavor>', 'flavor, e.g. v1.30-3node')
    .option('--env <id>', 'env id (lowercase letters and digits)', 'demo')
    .option('--ssh-mode <mode>', 'gateway or nodeport (default: from the configuration)')
    .option(
      '--public-key <file>',
      "labvirt's public key to put in the VMs (default: a throwaway one)",
    )
    .action(
      async (
        opts: { flavor: string; env: string; sshMode?: string; publicKey?: string },
        cmd: Command,
      ) => {
        const config = loadConfig({
          file: configFileOf(cmd),
          overrides: opts.sshMode ? { ssh: { mode: opts.sshMode } } : undefined,
        });
        if (!(opts.flavor in config.flavors)) {
          throw new Error(
            `unknown flavor ${opts.flavor}; configured: ${Object.keys(config.flavors).join(', ')}`,
          );
        }
        if (!/^[a-z0-9]{1,20}$/.test(opts.env))
          throw new Error('--env must be 1-20 lowercase letters or digits');
        const publicKey = opts.publicKey
          ? readFileSync(opts.publicKey, 'utf8').trim()
          : generateKeyPair().public.trim();
        const objects = renderEnvironment({
          config,
          flavor: opts.flavor,
          envId: opts.env,
          orchestratorPublicKey: publicKey,
          secrets: await generateEnvSecrets(),
        });
        process.stdout.write(objects.map((o) => stringify(o)).join('---\n'));
      },
    );
}
