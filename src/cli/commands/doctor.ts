import type { Command } from 'commander';
import { loadConfig } from '../../config/index.js';
import { doctorExitCode, formatReport, runDoctor } from '../../doctor/index.js';
import { configFileOf } from './config.js';

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description(
      'check the host cluster and settings labvirt is pointed at: pass/warn/fail with a fix for each problem (exit 0 pass, 3 warnings, 4 failures)',
    )
    .option('--json', 'print the report as JSON')
    .option('--kubevirt-namespace <namespace>', "where KubeVirt's KubeVirt resource is", 'kubevirt')
    .action(async (opts: { json?: boolean; kubevirtNamespace: string }, cmd: Command) => {
      const config = loadConfig({ file: configFileOf(cmd) });
      const report = await runDoctor({ config, kubevirtNamespace: opts.kubevirtNamespace });
      process.stdout.write(
        opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report),
      );
      process.exitCode = doctorExitCode(report);
    });
}
