import { mkdtempSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { LabTestReport, testLab } from '../../sessions/labtest.js';
import type { ListenSpec } from '../../sim/index.js';
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
    .option(
      '--bind <address>',
      'with --sim: the IP address Redis, the simulator, its guests and student API servers listen on',
      '127.0.0.1',
    )
    .option(
      '--ports <from-to>',
      'with --sim: the port range they all listen in, e.g. 41000-41199 (default: ports the OS picks)',
    )
    .option('--timeout <seconds>', 'per-lab limit for the env to become ready', '900')
    .option('--json', 'print the reports as JSON')
    .action(
      async (
        ids: string[],
        opts: {
          sim?: boolean;
          real?: boolean;
          bind: string;
          ports?: string;
          timeout: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        // Loaded when the command runs, not for `--help` or the client commands.
        const [{ startDevStack }, { startLabvirt }, { loadConfig }, log, labtest] =
          await Promise.all([
            import('../../app/dev.js'),
            import('../../app/index.js'),
            import('../../config/index.js'),
            import('../../log/index.js'),
            import('../../sessions/labtest.js'),
          ]);
        const { createLogger, silentLogger } = log;
        const { formatLabTestReport } = labtest;
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
        const listen = parseListen(opts.bind, opts.ports);
        if (typeof listen === 'string') {
          console.error(listen);
          process.exitCode = 2;
          return;
        }
        if (!useSim && (opts.ports || opts.bind !== '127.0.0.1')) {
          console.error(
            '--bind and --ports apply to --sim only (a real cluster listens where it is)',
          );
          process.exitCode = 2;
          return;
        }
        const timeoutMs = Number(opts.timeout) * 1000;
        const reports: LabTestReport[] = [];
        const run = async (handle: Parameters<typeof testLab>[0]) => {
          const wanted = ids.length > 0 ? ids : [...handle.context.labs.keys()].sort();
          for (const id of wanted) {
            const report = await labtest.testLab(handle, id, { timeoutMs });
            reports.push(report);
            if (!opts.json) console.log(formatLabTestReport(report));
          }
        };
        if (useSim) {
          const stack = await startDevStack({
            dir: mkdtempSync(join(tmpdir(), 'labvirt-labtest-')),
            configFile: file,
            sim: { speed: 50 },
            listen,
            overrides: {
              labsDir: base.labsDir,
              pool: { maxSetupMoves: 0 },
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
            // The real scripts, whatever labScripts the configuration names;
            // a failed setup is reported at once, not tried on other envs.
            config: {
              ...base,
              labScripts: 'standard',
              pool: { ...base.pool, maxSetupMoves: 0 },
            },
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

/** `--bind` and `--ports` as a listen spec, or what is wrong with them. */
export function parseListen(bind: string, ports: string | undefined): ListenSpec | string {
  if (isIP(bind) === 0) return `--bind ${bind} is not an IP address (e.g. 127.0.0.1)`;
  if (ports === undefined) return { host: bind };
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(ports);
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || from < 1 || to > 65535 || from > to) {
    return `--ports ${ports} is not a range like 41000-41199 (from ≤ to, within 1-65535)`;
  }
  return { host: bind, ports: { from, to } };
}
