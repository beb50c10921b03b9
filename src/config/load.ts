import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export interface ConfigProblem {
  /** Dotted path into the config, e.g. `flavors.v1.30-3node.minWarm`. */
  path: string;
  /** The offending value as given (secrets are never part of config). */
  value: unknown;
  /** What was expected instead. */
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: ConfigProblem[],
  ) {
    super(
      `invalid configuration (${source}):\n` +
        problems
          .map((p) => `  - ${p.path || '(root)'}: ${p.message} (got ${describe(p.value)})`)
          .join('\n'),
    );
    this.name = 'ConfigError';
  }
}

/**
 * Environment variables that override single settings, so a container can be
 * configured without a file. Secrets are not here: the config names the
 * variables that hold them (`api.tokenEnv`, `slack.*Env`).
 */
const ENV_OVERRIDES: Record<string, { path: string[]; type: 'string' | 'number' }> = {
  LABVIRT_KUBECONFIG: { path: ['kube', 'kubeconfig'], type: 'string' },
  LABVIRT_KUBE_CONTEXT: { path: ['kube', 'context'], type: 'string' },
  LABVIRT_REDIS_URL: { path: ['redis', 'url'], type: 'string' },
  LABVIRT_REDIS_PREFIX: { path: ['redis', 'prefix'], type: 'string' },
  LABVIRT_NAMESPACE_PREFIX: { path: ['namespacePrefix'], type: 'string' },
  LABVIRT_LABS_DIR: { path: ['labsDir'], type: 'string' },
  LABVIRT_LAB_SCRIPTS: { path: ['labScripts'], type: 'string' },
  LABVIRT_GUEST_ADDRESS_MAP: { path: ['kube', 'guestAddressMap'], type: 'string' },
  LABVIRT_LOG_LEVEL: { path: ['logLevel'], type: 'string' },
  LABVIRT_API_HOST: { path: ['api', 'host'], type: 'string' },
  LABVIRT_API_PORT: { path: ['api', 'port'], type: 'number' },
  LABVIRT_SSH_MODE: { path: ['ssh', 'mode'], type: 'string' },
  LABVIRT_SSH_PORT: { path: ['ssh', 'gatewayPort'], type: 'number' },
  LABVIRT_SSH_PUBLIC_HOST: { path: ['ssh', 'publicHost'], type: 'string' },
};

export const CONFIG_ENV_VARS = Object.keys(ENV_OVERRIDES);

export interface LoadConfigOptions {
  /** Config file (YAML or JSON). Defaults to `$LABVIRT_CONFIG`; built-in defaults when neither is set. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Extra settings merged over the file and under the environment (used by `labvirt dev` and tests). */
  overrides?: Record<string, unknown>;
}

/** Reads, merges and validates the configuration; throws {@link ConfigError} listing every problem. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env.LABVIRT_CONFIG;
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, [
        { path: '', value: file, message: `cannot read config file: ${(err as Error).message}` },
      ]);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      throw new ConfigError(file, [
        { path: '', value: undefined, message: `not valid YAML: ${(err as Error).message}` },
      ]);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw new ConfigError(file, [
          { path: '', value: parsed, message: 'the config file must hold a mapping of settings' },
        ]);
      }
      raw = parsed as Record<string, unknown>;
    }
  }
  if (options.overrides) raw = deepMerge(raw, options.overrides);

  const envProblems: ConfigProblem[] = [];
  for (const [name, spec] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (spec.type === 'number') {
      const n = Number(value);
      if (!Number.isInteger(n)) {
        envProblems.push({ path: `$${name}`, value, message: 'expected a whole number' });
        continue;
      }
      raw = setPath(raw, spec.path, n);
    } else {
      raw = setPath(raw, spec.path, value);
    }
  }

  const result = configSchema.safeParse(raw);
  const source = [file ?? 'defaults', 'environment'].join(' + ');
  if (!result.success || envProblems.length > 0) {
    const problems = [...envProblems, ...(result.success ? [] : toProblems(result.error, raw))];
    throw new ConfigError(source, problems);
  }
  return result.data;
}

function toProblems(error: z.ZodError, raw: unknown): ConfigProblem[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String);
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      message = `unknown setting(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}: check the spelling against the configuration reference`;
    }
    return { path: path.join('.'), value: getPath(raw, path), message };
  });
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function getPath(obj: unknown, path: string[]): unknown {
  let cur: unknown = obj;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function setPath(
  obj: Record<string, unknown>,
  path: string[],
  value: unknown,
): Record<string, unknown> {
  const [head, ...rest] = path;
  if (head === undefined) return obj;
  if (rest.length === 0) return { ...obj, [head]: value };
  const child = obj[head];
  const next = child && typeof child === 'object' ? (child as Record<string, unknown>) : {};
  return { ...obj, [head]: setPath(next, rest, value) };
}

/** Merges settings objects: nested objects merge, anything else (arrays included) replaces. */
export function deepMerge(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    if (isPlainObject(cur) && isPlainObject(v)) out[k] = deepMerge(cur, v);
    else out[k] = v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
