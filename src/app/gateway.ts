import type { Redis } from 'ioredis';
import { RedisReachability, connectRedis } from '../redis/index.js';
import type { Config } from '../config/index.js';
import type { EventBus } from '../events/index.js';
import { createLogger, moduleLogger, type Logger } from '../log/index.js';
import {
  followSessionChanges,
  sessionDirectory,
  type LegacyNodeSource,
} from '../sessions/directory.js';
import {
  directResolver,
  fileKeyStore,
  fileResolver,
  loadOrCreateHostKey,
  startGateway,
  type EnvIdentitySource,
  type Gateway,
  type GuestResolver,
  type HostKeyMismatchError,
  type KeyStore,
} from '../ssh/index.js';
import { Store } from '../store/index.js';
import { withBridgeKey } from '../web/index.js';

/** The Redis channel on which every process tells gateways of session changes. */
export function sessionChangesChannel(config: Config): string {
  return `${config.redis.prefix}:sessions-changed`;
}

export interface GatewayRoleOptions {
  config: Config;
  log: Logger;
  /** labvirt's Redis connection (a subscriber is made from it). */
  redis: Redis;
  /** The process's account of Redis's reachability (the subscriber's errors go there). */
  reachability: RedisReachability;
  store: Store;
  /** Where `ssh.hostKey` is kept (a file, or a Secret in a process with cluster access). */
  keyStore: (spec: string) => KeyStore;
  /** The gateway's own key for its hop to the guests (`ssh.gatewayClientKey`), already loaded. */
  clientKey: string;
  /** The web terminal bridge's public key, which the gateway accepts for every active session. */
  bridgeKey: string | (() => Promise<string | undefined>);
  resolve: GuestResolver;
  /** This process's own events (its session changes reach the directory at once). */
  events?: EventBus;
  /** For sessions activated before their nodes were recorded (a process with cluster access). */
  legacy?: { nodes: LegacyNodeSource; identity: EnvIdentitySource };
  onHostKeyMismatch?: (envId: string, error: HostKeyMismatchError) => void;
  now?: () => number;
}

export interface GatewayRole {
  gateway: Gateway;
  /** `ssh-ed25519 AAAA…` of the gateway's host key. */
  hostPublicKey: string;
  stop(): Promise<void>;
}

/**
 * The SSH gateway role: sessions from Redis (held in memory, every process's
 * changes heard on a Redis channel), its host key and its own client key.
 * It needs Redis and the guests' port 22, and nothing from the cluster.
 */
export async function startGatewayRole(options: GatewayRoleOptions): Promise<GatewayRole> {
  const { config, log } = options;
  const hostKey = await loadOrCreateHostKey(options.keyStore(config.ssh.hostKey));
  const directory = sessionDirectory(options.store, { legacyNodes: options.legacy?.nodes });
  const subscriber = options.reachability.watch(
    options.redis.duplicate(),
    'session changes subscriber',
  );
  const stopFollowing = await followSessionChanges({
    directory,
    events: options.events,
    subscriber,
    channel: sessionChangesChannel(config),
  });
  try {
    const gateway = await startGateway({
      hostKey: hostKey.privateKey,
      host: config.ssh.bindAddress,
      port: config.ssh.gatewayPort,
      // The web terminal bridge logs in with its own key (src/web).
      directory: withBridgeKey(directory, options.bridgeKey),
      clientKey: options.clientKey,
      identity: options.legacy?.identity,
      onHostKeyMismatch: options.onHostKeyMismatch,
      resolve: options.resolve,
      idleTimeoutMs: config.ssh.idleTimeoutMinutes * 60_000,
      authTimeoutMs: config.ssh.authTimeoutSeconds * 1000,
      maxUnauthenticated: config.ssh.maxUnauthenticated,
      maxUnauthenticatedPerSource: config.ssh.maxUnauthenticatedPerSource,
      logger: moduleLogger(log, 'gateway', config.logLevels),
      now: options.now,
    });
    return {
      gateway,
      hostPublicKey: hostKey.publicKey,
      async stop() {
        await gateway.close();
        await stopFollowing();
      },
    };
  } catch (err) {
    await stopFollowing();
    throw err;
  }
}

/** A key a gateway-only process reads: a file (the Secret mounted), never a Secret through the API. */
function gatewayKeyFile(setting: string): (spec: string) => KeyStore {
  return (spec) => {
    if (spec.startsWith('secret:')) {
      throw new Error(
        `${setting} is ${spec}: a gateway-only process (serve --roles gateway) has no cluster access; ` +
          'mount the Secret and give the file path',
      );
    }
    return fileKeyStore(spec);
  };
}

/** How long a gateway-only process trusts the bridge key it read from Redis. */
const BRIDGE_KEY_TTL_MS = 10_000;

export interface GatewayProcess {
  gatewayPort: number;
  stop(): Promise<void>;
}

/**
 * `labvirt serve --roles gateway`: the SSH gateway alone, with Redis and
 * the guests only — no kubeconfig is read and no Kubernetes call made.
 */
export async function startGatewayProcess(options: {
  config: Config;
  logger?: Logger;
  /** How guests are reached; default: `kube.guestAddressMap` when set, else directly. */
  resolver?: GuestResolver;
  now?: () => number;
}): Promise<GatewayProcess> {
  const { config } = options;
  const log = options.logger ?? createLogger({ level: config.logLevel });
  if (config.ssh.mode !== 'gateway') {
    throw new Error(
      'ssh.mode is nodeport: students reach their envs through NodePorts, there is no gateway to run',
    );
  }
  const reachability = new RedisReachability(log);
  const redis = await connectRedis(config.redis.url, reachability);
  try {
    const store = new Store(redis, config.redis.prefix);
    const clientKey = await loadOrCreateHostKey(
      gatewayKeyFile('ssh.gatewayClientKey')(config.ssh.gatewayClientKey),
    );
    // Published by the API role, which holds its private half.
    let bridge: { at: number; key: Promise<string | undefined> } | undefined;
    const bridgeKey = () => {
      const t = Date.now();
      if (!bridge || t - bridge.at >= BRIDGE_KEY_TTL_MS) {
        const entry = { at: t, key: store.bridgePublicKey() };
        bridge = entry;
        entry.key.catch(() => {
          if (bridge === entry) bridge = undefined;
        });
      }
      return bridge.key;
    };
    const role = await startGatewayRole({
      config,
      log,
      redis,
      reachability,
      store,
      keyStore: gatewayKeyFile('ssh.hostKey'),
      clientKey: clientKey.privateKey,
      bridgeKey,
      resolve:
        options.resolver ??
        (config.kube.guestAddressMap ? fileResolver(config.kube.guestAddressMap) : directResolver),
      now: options.now,
    });
    log.info({ gatewayPort: role.gateway.port }, 'labvirt gateway started');
    return {
      gatewayPort: role.gateway.port,
      async stop() {
        await role
          .stop()
          .catch((err: unknown) =>
            log.warn({ err: (err as Error).message }, 'error while stopping the gateway'),
          );
        redis.disconnect();
      },
    };
  } catch (err) {
    redis.disconnect();
    throw err;
  }
}
