import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { configFileOf } from './config.js';

interface RenderOptions {
  flavor: string;
  env: string;
  sshMode?: string;
  publicKey?: string;
  validate: boolean;
}

/** `labvirt render`: print one whole environment as the host cluster would receive it. */
export function registerRenderCommand(program: Command): void {
  program
    .command('render')
    .description(
      'print every object of one environment as multi-document YAML, in creation order ' +
        '(fresh CA and bootstrap token each time)',
    )
    .requiredOption('--flavor <flavor>', 'flavor, e.g. v1.30-3node')
    .option('--env <id>', 'env id (lowercase letters and digits)', 'demo')
    .option('--ssh-mode <mode>', 'gateway or nodeport (default: from the configuration)')
    .option(
      '--public-key <file>',
      "labvirt's OpenSSH public key to put in the VMs (default: a throwaway one)",
    )
    .option('--no-validate', 'skip the strict schema validation of the output')
    .addHelpText(
      'after',
      '\nExample (a server dry run needs the env namespace to exist):\n' +
        '  labvirt render --flavor v1.30-3node --env demo > env.yaml\n' +
        '  kubectl create namespace lab-demo && kubectl apply --dry-run=server -f env.yaml',
    )
    .action(async (opts: RenderOptions, cmd: Command) => {
      // Loaded when the command runs, not for `--help` or the client commands.
      const [{ stringify }, { loadConfig }, kube] = await Promise.all([
        import('yaml'),
        import('../../config/index.js'),
        import('../../kube/index.js'),
      ]);
      const {
        KubevirtSchemasMissingError,
        assertValid,
        generateEnvSecrets,
        imagePinning,
        renderEnvironment,
        unpinnedImagesNotice,
      } = kube;
      if (opts.sshMode !== undefined && !['gateway', 'nodeport'].includes(opts.sshMode)) {
        throw new Error('--ssh-mode must be gateway or nodeport');
      }
      const config = loadConfig({
        file: configFileOf(cmd),
        overrides: opts.sshMode ? { ssh: { mode: opts.sshMode } } : undefined,
      });
      if (!/^[a-z0-9]{1,20}$/.test(opts.env)) {
        throw new Error('--env must be 1-20 lowercase letters or digits');
      }
      const secrets = await generateEnvSecrets();
      // --public-key: log in to the rendered VMs with a key of one's own instead of the env's.
      if (opts.publicKey) {
        secrets.sshKey = {
          privateKey: '',
          publicKey: readFileSync(opts.publicKey, 'utf8').trim(),
        };
      }
      const objects = renderEnvironment({
        config,
        flavor: opts.flavor,
        envId: opts.env,
        secrets,
      });
      if (opts.validate) {
        try {
          assertValid(objects);
        } catch (err) {
          if (!(err instanceof KubevirtSchemasMissingError)) throw err;
          console.error(`labvirt: not validated: ${err.message}`);
        }
      }
      // Without a (current) image lock every image is pulled by its tag.
      const unpinned = unpinnedImagesNotice(imagePinning(config));
      if (unpinned) console.error(`labvirt: warning: ${unpinned}`);
      // A CNI without NetworkPolicy accepts these policies and enforces none.
      process.stdout.write(
        "# labvirt: the NetworkPolicies below isolate this env only where the host's CNI\n" +
          '# enforces NetworkPolicy (flannel alone does not): `labvirt doctor` checks it.\n',
      );
      process.stdout.write(objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n'));
    });
}
