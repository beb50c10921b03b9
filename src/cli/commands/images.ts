import type { Command } from 'commander';
import { configFileOf } from './config.js';

interface LockOptions {
  out?: string;
  registry: string[];
  concurrency: string;
  timeout: string;
}

const REGISTRY_OVERRIDE = /^([a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?)=(https?:\/\/\S+)$/;

/** `labvirt images list|lock`: the images labvirt's envs use, and their digests. */
export function registerImagesCommands(program: Command): void {
  const images = program
    .command('images')
    .description("the container images labvirt's envs and labs use, pinned by digest");

  images
    .command('list')
    .description(
      'list every image the rendered envs and labs use, who pulls it, and its locked digest',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const [{ loadConfig }, kube, img] = await Promise.all([
        import('../../config/index.js'),
        import('../../kube/index.js'),
        import('../../images/index.js'),
      ]);
      const config = loadConfig({ file: configFileOf(cmd) });
      const uses = img.imagesInUse(config, kube.inventoryDirs());
      const lock = kube.imageLockOf(config);
      for (const use of uses) {
        const digest = lock?.images.get(use.name) ?? 'not locked';
        process.stdout.write(`${use.name}\t${digest}\t${use.pulledBy}\t${use.usedBy.join(', ')}\n`);
      }
    });

  images
    .command('lock')
    .description(
      'resolve each image to its digest through the registries (OCI distribution API, ' +
        'mirrors of vm.registryMirrors first, through vm.proxy or the environment’s proxy) ' +
        'and write the image lock; nothing is written unless every image resolves',
    )
    .option(
      '--out <file>',
      'where to write the lock (default: vm.imagesLock, else vm-templates/images/images.lock.yaml)',
    )
    .option(
      '--registry <host=url>',
      'resolve images of registry HOST at URL instead of the registry itself (an internal registry serving the same names); repeatable',
      (value: string, all: string[]) => [...all, value],
      [] as string[],
    )
    .option('--concurrency <n>', 'images resolved at once', '4')
    .option('--timeout <seconds>', 'per registry request', '30')
    .addHelpText(
      'after',
      '\nRun it where the registries (or their mirrors) are reachable, then commit the lock:\n' +
        '  labvirt images lock && git add vm-templates/images/images.lock.yaml',
    )
    .action(async (opts: LockOptions, cmd: Command) => {
      const [{ loadConfig }, kube, img] = await Promise.all([
        import('../../config/index.js'),
        import('../../kube/index.js'),
        import('../../images/index.js'),
      ]);
      const concurrency = Number(opts.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32) {
        throw new Error(`--concurrency: expected 1 to 32, got "${opts.concurrency}"`);
      }
      const timeout = Number(opts.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0) {
        throw new Error(`--timeout: expected seconds > 0, got "${opts.timeout}"`);
      }
      const endpoints: Record<string, string> = {};
      for (const value of opts.registry) {
        const m = REGISTRY_OVERRIDE.exec(value);
        if (!m)
          throw new Error(
            `--registry: expected HOST=URL (docker.io=https://registry.example.org), got "${value}"`,
          );
        endpoints[m[1]!] = m[4]!;
      }
      const config = loadConfig({ file: configFileOf(cmd) });
      const out = opts.out ?? kube.imageLockPath(config);
      const uses = img.imagesInUse(config, kube.inventoryDirs());
      const dispatcher = img.registryDispatcher(config);
      try {
        const { images, sources } = await img.lockImages(
          uses,
          out,
          {
            mirrors: config.vm.registryMirrors,
            endpoints,
            dispatcher,
            timeoutMs: timeout * 1000,
          },
          concurrency,
        );
        for (const use of uses) {
          process.stderr.write(`${use.name} ${images.get(use.name)} (${sources.get(use.name)})\n`);
        }
        process.stderr.write(`wrote ${out}: ${images.size} images\n`);
      } finally {
        await dispatcher.close();
      }
    });
}
