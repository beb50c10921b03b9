import type { Command } from 'commander';
import { configFileOf } from './config.js';

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description(
      'check the host cluster and settings labvirt is pointed at: pass/warn/fail with a fix for each problem (exit 0 pass, 3 warnings, 4 failures)',
    )
    .option('--json', 'print the report as JSON')
    .option('--kubevirt-namespace <namespace>', "where KubeVirt's KubeVirt resource is", 'kubevirt')
    .option(
      '--check-images',
      "also check that each flavor's containerDisk image can be pulled (creates a short-lived pod per image)",
    )
    .option(
      '--images-namespace <namespace>',
      "where the image probe pods run (default: labvirt's own namespace in a pod, else the kubeconfig context's, else default)",
    )
    .option('--image-timeout <seconds>', 'how long one image may take to pull', '120')
    .action(
      async (
        opts: {
          json?: boolean;
          kubevirtNamespace: string;
          checkImages?: boolean;
          imagesNamespace?: string;
          imageTimeout: string;
        },
        cmd: Command,
      ) => {
        // Loaded here, not at the top: `labvirt --help` must not load the
        // Kubernetes client and the config schema (issue #12, CLI start-up).
        const [{ loadConfig }, { doctorExitCode, formatReport, runDoctor }] = await Promise.all([
          import('../../config/index.js'),
          import('../../doctor/index.js'),
        ]);
        const config = loadConfig({ file: configFileOf(cmd) });
        const timeout = Number(opts.imageTimeout);
        if (!Number.isFinite(timeout) || timeout <= 0) {
          throw new Error(`--image-timeout: expected seconds > 0, got "${opts.imageTimeout}"`);
        }
        // Ctrl-C while probe pods run: stop waiting, remove them, print what is known.
        const interrupted = new AbortController();
        const onSigint = () => interrupted.abort();
        process.once('SIGINT', onSigint);
        const report = await runDoctor({
          config,
          kubevirtNamespace: opts.kubevirtNamespace,
          images: opts.checkImages
            ? { namespace: opts.imagesNamespace, deadlineMs: timeout * 1000 }
            : undefined,
          signal: interrupted.signal,
        }).finally(() => process.off('SIGINT', onSigint));
        process.stdout.write(
          opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report),
        );
        process.exitCode = interrupted.signal.aborted ? 130 : doctorExitCode(report);
      },
    );
}
