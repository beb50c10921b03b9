import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { LabvirtHandle } from '../../app/index.js';
import type { Config } from '../../config/index.js';
import { configFileOf } from './config.js';

const SERVE_ROLES = ['api', 'workers', 'gateway', 'scheduler', 'sync'] as const;
type ServeRole = (typeof SERVE_ROLES)[number];

/** `--roles api,workers`: each a known part, at least one. */
function parseRoles(value: string): Set<ServeRole> {
  const names = value
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  const unknown = names.filter((r) => !(SERVE_ROLES as readonly string[]).includes(r));
  if (unknown.length > 0 || names.length === 0) {
    throw new InvalidArgumentError(
      `roles are ${SERVE_ROLES.join(', ')}${unknown.length ? ` (not ${unknown.join(', ')})` : ''}`,
    );
  }
  return new Set(names as ServeRole[]);
}

/** Resolves when the process is asked to stop (Ctrl-C, SIGTERM). */
function untilSignal(): Promise<string> {
  return new Promise((resolvePromise) => {
    const on = (sig: string) => () => resolvePromise(sig);
    process.once('SIGINT', on('SIGINT'));
    process.once('SIGTERM', on('SIGTERM'));
  });
}

function apiTokenFrom(config: Config): string {
  const token = process.env[config.api.tokenEnv];
  if (!token || token.length < 16) {
    throw new Error(
      `set $${config.api.tokenEnv} to the HTTP API token (at least 16 characters); ` +
        'front ends and the CLI send it as a bearer token',
    );
  }
  return token;
}

export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description('run labvirt: orchestrator, workers, schedules, SSH gateway and HTTP API')
    .option('--no-api', 'do not serve the HTTP API in this process')
    .option('--no-workers', 'do not run provisioning/prepare/teardown workers in this process')
    .option('--no-gateway', 'do not run the SSH gateway in this process')
    .option('--no-scheduler', 'do not run the cron schedules in this process')
    .option(
      '--roles <list>',
      `run only these parts, comma-separated (${SERVE_ROLES.join(', ')}); e.g. \`--roles gateway\` ` +
        'for an SSH gateway that needs no Kubernetes rights (its keys as files)',
      parseRoles,
    )
    .action(async (opts: Record<string, boolean> & { roles?: Set<ServeRole> }, cmd: Command) => {
      // Loaded when the command runs, not for `--help` or the client commands.
      const [{ startLabvirt }, { loadConfig }, { createLogger }, { slackSecretsFrom }] =
        await Promise.all([
          import('../../app/index.js'),
          import('../../config/index.js'),
          import('../../log/index.js'),
          import('../../slack/secrets.js'),
        ]);
      // Listening before anything starts: a SIGTERM during start-up (provisioning
      // begins before startLabvirt returns) still gets the graceful stop.
      const stopping = untilSignal();
      const config = loadConfig({ file: configFileOf(cmd) });
      const logger = createLogger({ level: config.logLevel });
      const roles = opts.roles
        ? Object.fromEntries(SERVE_ROLES.map((r) => [r, opts.roles!.has(r)]))
        : {
            api: opts.api,
            workers: opts.workers,
            gateway: opts.gateway,
            scheduler: opts.scheduler,
          };
      // The SSH gateway alone needs only Redis and the guests: no kubeconfig is read.
      const gatewayOnly =
        roles.gateway !== false &&
        SERVE_ROLES.every(
          (r) => r === 'gateway' || (roles as Record<string, unknown>)[r] === false,
        );
      const handle = gatewayOnly
        ? await (await import('../../app/gateway.js')).startGatewayProcess({ config, logger })
        : await startLabvirt({
            config,
            logger,
            // Only the HTTP API checks the token: a gateway-only process holds none.
            apiToken: roles.api === false ? '' : apiTokenFrom(config),
            slack: slackSecretsFrom(config),
            roles,
          });
      const signal = await stopping;
      logger.info(
        { signal, graceSeconds: config.pool.shutdownGraceSeconds },
        'stopping: no new work; running jobs go back to the queue after the grace period',
      );
      await handle.stop();
      // A handed-back job's handler may still hold sockets or timers: they must not keep us up.
      process.exit(process.exitCode ?? 0);
    });

  program
    .command('dev')
    .description(
      'run labvirt on its embedded default: a simulated KubeVirt cluster and a private Redis, ' +
        'with the pool filled, then print what to try',
    )
    .option('--dir <dir>', 'working directory for the simulator, keys and Redis', '.labvirt/dev')
    .option('--api-port <port>', 'HTTP API port', '8080')
    .option('--ssh-port <port>', 'SSH gateway port', '2222')
    .option('--speed <factor>', 'how much faster than a real cluster the simulator boots VMs', '20')
    .option('--exit-when-ready', 'stop once the pool is warm (smoke test)')
    .addOption(
      new Option(
        '--log-level <level>',
        "level of labvirt's JSON log lines on stdout (default: $LABVIRT_LOG_LEVEL, else warn)",
      ).choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    )
    .action(async (opts: Record<string, string | boolean>, cmd: Command) => {
      const [
        { startDevStack },
        { createLogger },
        { ensureRedisServer },
        { loadConfig },
        { slackSecretsFrom },
      ] = await Promise.all([
        import('../../app/dev.js'),
        import('../../log/index.js'),
        import('../../redis/index.js'),
        import('../../config/index.js'),
        import('../../slack/secrets.js'),
      ]);
      const dir = resolve(String(opts.dir));
      mkdirSync(dir, { recursive: true });
      const out = (line = '') => process.stdout.write(line + '\n');
      out('labvirt dev: starting Redis and the simulated KubeVirt cluster…');
      await ensureRedisServer();
      // With Slack secrets in the environment, the dev stack talks to a real
      // workspace; Socket Mode when an app token is set, so no public URL is needed.
      const baseConfig = loadConfig({ file: configFileOf(cmd), env: {} });
      const slack = slackSecretsFrom(baseConfig);
      if (slack) {
        out(
          `labvirt dev: Slack secrets found; ${slack.appToken ? 'Socket Mode' : `HTTP mode (${baseConfig.slack.mode})`}`,
        );
      }
      const stack = await startDevStack({
        slack,
        dir,
        configFile: configFileOf(cmd),
        sim: { speed: Number(opts.speed) },
        logger: createLogger({
          level: String(opts.logLevel ?? process.env.LABVIRT_LOG_LEVEL ?? 'warn'),
        }),
        overrides: {
          api: { port: Number(opts.apiPort) },
          ssh: { gatewayPort: Number(opts.sshPort) },
          pool: { pollSeconds: 0.2, replenishCron: '*/10 * * * * *' },
          ...(slack?.appToken ? { slack: { mode: 'socket' } } : {}),
        },
      });
      const handle = stack.labvirt;
      writeFileSync(join(dir, 'api-token'), stack.apiToken + '\n', { mode: 0o600 });
      try {
        out(`labvirt dev: API ${handle.apiUrl}, SSH gateway 127.0.0.1:${handle.gatewayPort}`);
        out(`labvirt dev: simulated cluster kubeconfig ${stack.sim.kubeconfigPath}`);
        out('labvirt dev: filling the warm pool…');
        await handle.runMaintenance('replenish');
        await waitForWarm(handle, 180_000);
        const pool = await handle.service.poolStatus();
        for (const f of pool.flavors) {
          out(`  ${f.flavor}: ${f.counts.warm} warm (target ${f.targetWarm})`);
        }
        const labs = await handle.service.listLabs();
        const example =
          labs.find((l) => l.id === 'kubelet-down-worker')?.id ?? labs[0]?.id ?? '<lab>';
        out('');
        out('Try it (in another terminal, from this folder):');
        out(
          `  export LABVIRT_API_URL=${handle.apiUrl} LABVIRT_API_TOKEN=$(cat ${join(dir, 'api-token')})`,
        );
        out(`  npx labvirt start --lab ${example} --student alice`);
        out(`  ssh -i <the key file it prints> -p ${handle.gatewayPort} <session>@127.0.0.1`);
        out('  npx labvirt check <session>     npx labvirt pool status');
        out(`  labs: ${labs.map((l) => l.id).join(', ')}`);
        out('');
        if (opts.exitWhenReady) {
          out('labvirt dev: ready (exiting as asked)');
        } else {
          out('labvirt dev: running; Ctrl-C stops everything.');
          await untilSignal();
          out('labvirt dev: stopping… (Ctrl-C again quits at once)');
          // A second signal does not wait for the stop (which gives running
          // jobs the grace period): the exit hooks kill Redis, and the
          // simulated guests die with the simulator.
          const quit = (signal: string) => () => {
            out(`labvirt dev: ${signal} again: quitting without waiting`);
            process.exit(130);
          };
          process.once('SIGINT', quit('SIGINT'));
          process.once('SIGTERM', quit('SIGTERM'));
        }
      } finally {
        await stack.stop();
      }
      // A part given up on after the grace period (e.g. Redis gone before
      // labvirt) may still hold sockets or timers: they must not keep us up.
      process.exit(process.exitCode ?? 0);
    });
}

async function waitForWarm(handle: LabvirtHandle, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pool = await handle.service.poolStatus();
    if (pool.flavors.every((f) => f.counts.warm >= Math.min(1, f.targetWarm))) return;
    if (Date.now() > deadline) throw new Error('the pool did not warm up in time');
    await new Promise((r) => setTimeout(r, 250));
  }
}
