import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { startDevStack } from '../../app/dev.js';
import { startLabvirt } from '../../app/index.js';
import { loadConfig } from '../../config/index.js';
import { createLogger, silentLogger } from '../../log/index.js';
import { formatLabTestReport, testLab, type LabTestReport } from '../../sessions/labtest.js';
import { configFileOf } from './config.js';

/**
 * `labvirt labs test`: for each lab, claim an env, run setup, assert the check
 * fails, run solve, assert it passes, solve again (idempotency), tear down.
 */
export function registerLabTestCommand(program: Command): void {
  const labs =
    program.commands.find((c) => c.name() === 'labs') ??
    program.command('labs').description('work with lab scenarios');
  labs
    .command('test')
    .description(
      'test labs end to end: setup → check must fail → solve → check must pass → solve again → ' +
        'tear down, then each wrong fix on a fresh env (the checks must still fail). ' +
        "With --sim (default when no host cluster is configured) on an embedded simulated cluster with each lab's sim scripts; " +
        'with --real on the configured host cluster with the real scripts. The report says which ran.',
    )
    .argument('[labs...]', 'lab ids (default: every lab)')
    .option('--sim', 'run the sim scripts on an embedded simulated cluster and private Redis')
    .option('--real', 'run the real scripts on the configured host cluster (kube.kubeconfig)')
    .option('--timeout <seconds>', 'per-lab limit for the env to become ready', '900')
    .option('--json', 'print the reports as JSON')
    .action(
      async (
        ids: string[],
        opts: { sim?: boolean; real?: boolean; timeout: string; json?: boolean },
        cmd: Command,
      ) => {
        const file = configFileOf(cmd);
        const base = loadConfig({ file });
        if (opts.sim && opts.real) {
          console.error('choose one of --sim and --real');
          process.exitCode = 2;
          return;
        }
        if (opts.real && !base.kube.kubeconfig) {
          console.error(
            '--real needs a host cluster: set kube.kubeconfig in the configuration (see docs/configuration.md)',
          );
          process.exitCode = 2;
          return;
        }
        const useSim = opts.real ? false : (opts.sim ?? !base.kube.kubeconfig);
        const timeoutMs = Number(opts.timeout) * 1000;
        const reports: LabTestReport[] = [];
        const run = async (handle: Parameters<typeof testLab>[0]) => {
          const wanted = ids.length > 0 ? ids : [...handle.context.labs.keys()].sort();
          for (const id of wanted) {
            const report = await testLab(handle, id, { timeoutMs });
            reports.push(report);
            if (!opts.json) console.log(formatLabTestReport(report));
          }
        };
        if (useSim) {
          const stack = await startDevStack({
            dir: mkdtempSync(join(tmpdir(), 'labvirt-labtest-')),
            configFile: file,
            sim: { speed: 50 },
            overrides: {
              labsDir: base.labsDir,
              flavors: Object.fromEntries(
                Object.entries(base.flavors).map(([k, f]) => [k, { ...f, minWarm: 1 }]),
              ),
            },
            roles: { api: false, gateway: false, scheduler: false },
          });
          try {
            await run(stack.labvirt);
          } finally {
            await stack.stop();
          }
        } else {
          const handle = await startLabvirt({
            // The real scripts, whatever labScripts the configuration names.
            config: { ...base, labScripts: 'standard' },
            logger: createLogger({ level: 'warn' }) ?? silentLogger(),
            apiToken: 'unused-by-lab-tests',
            roles: { api: false, gateway: false, scheduler: false },
          });
          try {
            await run(handle);
          } finally {
            await handle.stop();
          }
        }
        if (opts.json) console.log(JSON.stringify(reports, null, 2));
        const failed = reports.filter((r) => !r.ok);
        if (!opts.json)
          console.log(`${reports.length - failed.length} passed, ${failed.length} failed`);
        if (failed.length > 0) process.exitCode = 1;
      },
    );
}
