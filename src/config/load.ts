import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';
import { closest } from './suggest.js';

export interface ConfigProblem {
  /** Dotted path into the config, e.g. `flavors.v1.30-3node.minWarm`. */
  path: string;
  /** The offending value as given (secrets are never part of config). */
  value: unknown;
  /** What was expected instead. */
  message: string;
  /** The value is not shown (it may be a secret put where a variable name belongs). */
  hidden?: boolean;
  /** The setting was not given: its default is part of the problem (the message names it). */
  defaulted?: boolean;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: ConfigProblem[],
  ) {
    super(
      `invalid configuration (${source}):\n` +
        problems.map((p) => `  - ${p.path || '(file)'}: ${p.message}${suffix(p)}`).join('\n'),
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
/** Which setting each variable sets (the generated configuration reference lists them). */
export const CONFIG_ENV_OVERRIDES: Readonly<
  Record<string, { readonly path: readonly string[]; readonly type: 'string' | 'number' }>
> = ENV_OVERRIDES;

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
      const pos = (err as { linePos?: { line: number; col: number }[] }).linePos?.[0];
      const what = ((err as Error).message.split('\n')[0] ?? '').replace(
        / at line \d+, column \d+:?$/,
        '',
      );
      throw new ConfigError(file, [
        {
          path: '',
          value: undefined,
          message: `not valid YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${what}`,
        },
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
  /** Settings given by environment variables, by dotted path, so problems can name the variable. */
  const fromEnv = new Map<string, string>();
  for (const [name, spec] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    fromEnv.set(spec.path.join('.'), name);
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
    const problems = [
      ...envProblems,
      ...(result.success ? [] : toProblems(result.error, raw, fromEnv)),
    ];
    throw new ConfigError(source, problems);
  }
  return result.data;
}

function toProblems(
  error: z.ZodError,
  raw: unknown,
  fromEnv: ReadonlyMap<string, string>,
): ConfigProblem[] {
  const named = (path: string) => {
    const variable = fromEnv.get(path);
    return variable ? `${path} (from $${variable})` : path;
  };
  return error.issues.flatMap((issue): ConfigProblem[] => {
    const path = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      // One problem per unknown key, at its own path, with the nearest known name.
      const known = knownKeysAt(path);
      return issue.keys.map((key) => {
        const close = closest(key, known);
        const hint = close
          ? `did you mean "${close}"?`
          : known.length > 0
            ? `known settings here: ${known.join(', ')}`
            : 'check the spelling against the configuration reference';
        const value = getPath(raw, [...path, key]);
        return {
          path: [...path, key].join('.'),
          value,
          message: `unknown setting "${key}": ${hint}`,
          // e.g. `slack.botToken: xoxb-…`: a secret written into the file by
          // mistake; a mapping may hold one anywhere inside.
          ...(SECRET_LIKE_KEY.test(key) || looksSecret(value) ? { hidden: true } : {}),
        };
      });
    }
    const dotted = path.join('.');
    const problem: ConfigProblem = {
      path: named(dotted),
      value: getPath(raw, path),
      message: issue.message,
    };
    // A secret pasted where its variable's name belongs must not reach a log.
    if (/Env$/.test(path.at(-1) ?? '')) problem.hidden = true;
    // A check across settings can be about a default nobody wrote down.
    if (issue.code === 'custom' && problem.value === undefined) problem.defaulted = true;
    return [problem];
  });
}

/** The setting names the schema knows at `path` (empty when it is not a mapping of settings). */
function knownKeysAt(path: readonly string[]): string[] {
  let schema: unknown = unwrap(configSchema);
  for (const key of path) {
    const def = defOf(schema);
    if (def?.type === 'object') schema = (def.shape as Record<string, unknown>)[key];
    else if (def?.type === 'record') schema = def.valueType;
    else if (def?.type === 'array') schema = def.element;
    else return [];
    schema = unwrap(schema);
  }
  const def = defOf(schema);
  return def?.type === 'object' ? Object.keys(def.shape as Record<string, unknown>) : [];
}

interface SchemaDef {
  type: string;
  shape?: unknown;
  valueType?: unknown;
  element?: unknown;
  innerType?: unknown;
}

function defOf(schema: unknown): SchemaDef | undefined {
  return (schema as { def?: SchemaDef } | undefined)?.def;
}

/** Looks through `.default()`, `.optional()` and the like to the schema they wrap. */
function unwrap(schema: unknown): unknown {
  let s = schema;
  for (let def = defOf(s); def?.innerType !== undefined; def = defOf(s)) s = def.innerType;
  return s;
}

const SECRET_LIKE_KEY = /token|secret|passw|credential|key$/i;

/**
 * Values never quoted back for an unknown key: mappings and lists (they may
 * hold anything), URLs with credentials, known token shapes, and long
 * unbroken strings that look random.
 */
function looksSecret(value: unknown): boolean {
  if (value !== null && typeof value === 'object') return true;
  if (typeof value !== 'string') return false;
  return (
    /^[a-z][a-z0-9+.-]*:\/\/[^/\s]*@/i.test(value) ||
    /^(xox[abposr]-|xapp-|ghp_|github_pat_|glpat-|sk-|AKIA|eyJ)/.test(value) ||
    /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(value) ||
    (/^[A-Za-z0-9+/=_-]{20,}$/.test(value) && /[0-9]/.test(value) && /[A-Za-z]/.test(value))
  );
}

/** `scheme://user:password@host` → `scheme://***@host`, wherever it appears. */
function redactUrlCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@"\s]*@/gi, '$1***@');
}

/**
 * The configuration with credentials in URLs replaced by `***` (for
 * `labvirt config show` and anything else that prints it).
 */
export function redactConfig<T>(value: T): T {
  if (typeof value === 'string') return redactUrlCredentials(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => redactConfig(v)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, redactConfig(v as unknown)]),
    ) as T;
  }
  return value;
}

function suffix(p: ConfigProblem): string {
  if (p.hidden) return ' (value not shown: it may be a secret)';
  if (p.defaulted) return ' (not set: the default applies)';
  // Problems with the file as a whole (unreadable, not YAML) have no value to show.
  if (p.path === '' && p.value === undefined) return '';
  return ` (got ${describe(p.value)})`;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  // A URL's password (redis://:secret@host) never goes into a message.
  const text = redactUrlCredentials(JSON.stringify(value));
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
