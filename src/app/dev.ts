import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { deepMerge, loadConfig } from '../config/index.js';
import { silentLogger, type Logger } from '../log/index.js';
import { startRedisServer, type RedisServerHandle } from '../redis/index.js';
import { startSim, type ListenSpec, type SimHandle, type SimOptions } from '../sim/index.js';
import { startLabvirt, type LabvirtHandle, type LabvirtOptions } from './index.js';

export interface DevStackOptions {
  /** Working directory for the simulator, keys and Redis. */
  dir: string;
  /** Config file to start from (its kube/redis settings are replaced). */
  configFile?: string;
  /** Settings merged over the dev defaults. */
  overrides?: Record<string, unknown>;
  sim?: Omit<SimOptions, 'dir'>;
  /**
   * Address and port range for everything the stack starts: Redis, the
   * simulator's API, guests and student API servers (default 127.0.0.1, ports
   * chosen by the OS). labvirt's own API and gateway keep their configuration.
   */
  listen?: ListenSpec;
  logger?: Logger;
  roles?: LabvirtOptions['roles'];
  apiToken?: string;
  now?: () => number;
  /** Slack secrets; with them labvirt talks to Slack (at `slack.apiUrl`). */
  slack?: LabvirtOptions['slack'];
  slackClientRetries?: LabvirtOptions['slackClientRetries'];
  /**
   * Which kubeconfig labvirt uses (default: the sim's all-powerful admin), e.g.
   * `(sim) => sim.kubeconfigFor('labvirt', 'labvirt')` to run under RBAC.
   */
  kubeconfig?: (sim: SimHandle) => string | Promise<string>;
}

export interface DevStack {
  labvirt: LabvirtHandle;
  sim: SimHandle;
  redis: RedisServerHandle;
  apiToken: string;
  stop(): Promise<void>;
}

/**
 * labvirt on its embedded default: a private redis-server on a free port, the
 * simulated KubeVirt cluster, and labvirt against both, running each lab's
 * fixture-friendly scripts. Used by `labvirt dev`, `labvirt labs test --sim`
 * and the end-to-end tests.
 */
export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const redis = await startRedisServer({
    port: 0,
    dir: join(dir, 'redis'),
    ...(options.listen ? { host: options.listen.host, ports: options.listen.ports } : {}),
  });
  let sim: SimHandle | undefined;
  try {
    sim = await startSim({
      runPods: true, // plain pods run, as doctor's image pull probe needs
      ...options.sim,
      ...(options.listen ? { listen: options.listen } : {}),
      dir: join(dir, 'sim'),
    });
    const kubeconfig = options.kubeconfig ? await options.kubeconfig(sim) : sim.kubeconfigPath;
    const apiToken = options.apiToken ?? randomBytes(24).toString('hex');
    const config = loadConfig({
      file: options.configFile,
      env: {},
      overrides: deepMerge(
        {
          kube: { kubeconfig },
          redis: { url: redis.url },
          labScripts: 'sim',
          api: { host: '127.0.0.1', port: 0 },
          ssh: {
            gatewayPort: 0,
            bindAddress: '127.0.0.1',
            publicHost: '127.0.0.1',
            hostKey: join(dir, 'gateway_host_key'),
            orchestratorKey: join(dir, 'orchestrator_key'),
            gatewayClientKey: join(dir, 'gateway_client_key'),
          },
          pool: { pollSeconds: 0.1, jobLockSeconds: 5 },
          // The sync's TLS relay needs openssl in a guest that has its own
          // 127.0.0.1:6443; without either, TLS runs in labvirt instead.
          ...(sim.guestsRunOpensslRelay ? {} : { sync: { apiTls: 'labvirt' } }),
        },
        options.overrides ?? {},
      ),
    });
    const labvirt = await startLabvirt({
      config,
      logger: options.logger ?? silentLogger(),
      apiToken,
      resolver: sim.resolveGuest,
      roles: options.roles,
      now: options.now,
      slack: options.slack,
      slackClientRetries: options.slackClientRetries,
    });
    const simHandle = sim;
    return {
      labvirt,
      sim: simHandle,
      redis,
      apiToken,
      async stop() {
        await labvirt.stop();
        await simHandle.stop();
        await redis.stop();
      },
    };
  } catch (err) {
    await sim?.stop();
    await redis.stop();
    throw err;
  }
}
