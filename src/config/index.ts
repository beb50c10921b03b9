export {
  configSchema,
  LOG_MODULES,
  flavorName,
  type Config,
  type ConfigInput,
  type FlavorConfig,
  type RoleResources,
  type HostDnsConfig,
  type ScheduledTarget,
} from './schema.js';
export {
  loadConfig,
  redactConfig,
  deepMerge,
  ConfigError,
  CONFIG_ENV_VARS,
  CONFIG_ENV_OVERRIDES,
  type ConfigProblem,
  type LoadConfigOptions,
} from './load.js';
