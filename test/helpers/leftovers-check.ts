/** What a test file changed in its process that the next file in the worker would inherit. */

/** Process events whose listeners a test file adds and must remove. */
const WATCHED_EVENTS = [
  'SIGINT',
  'SIGTERM',
  'SIGHUP',
  'unhandledRejection',
  'uncaughtException',
  'warning',
  'beforeExit',
] as const;

export interface ProcessState {
  env: Record<string, string | undefined>;
  cwd: string;
  exitCode: typeof process.exitCode;
  listeners: Record<string, number>;
  /** `exit` listeners: modules add one per process on first use, so only many at once are a fault. */
  exitListeners: number;
  resources: string[];
  /** Process-wide functions and objects a test may replace (spies, stubs, a global dispatcher). */
  globals: Record<string, unknown>;
}

// undici's (and Node's fetch's) process-wide dispatcher, set by `setGlobalDispatcher`.
const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

function replaceableGlobals(): Record<string, unknown> {
  return {
    'console.log': console.log,
    'console.info': console.info,
    'console.warn': console.warn,
    'console.error': console.error,
    'process.stdout.write': process.stdout.write,
    'process.stderr.write': process.stderr.write,
    'process.exit': process.exit,
    'globalThis.fetch': globalThis.fetch,
    'Date.now': Date.now,
    'Math.random': Math.random,
    "undici's global dispatcher": (globalThis as Record<symbol, unknown>)[GLOBAL_DISPATCHER],
  };
}

export function captureProcessState(): ProcessState {
  return {
    env: { ...process.env },
    cwd: process.cwd(),
    exitCode: process.exitCode,
    listeners: Object.fromEntries(WATCHED_EVENTS.map((e) => [e, process.listenerCount(e)])),
    exitListeners: process.listenerCount('exit'),
    resources: process.getActiveResourcesInfo(),
    globals: replaceableGlobals(),
  };
}

/** Puts back what `replaceableGlobals` recorded. */
export function restoreGlobals(saved: Record<string, unknown>): void {
  const now = replaceableGlobals();
  for (const [name, value] of Object.entries(saved)) {
    // undefined: not made yet when recorded (undici's dispatcher is made on
    // first use); taking it away again would break every later fetch.
    if (value === undefined || now[name] === value) continue;
    const path = name === "undici's global dispatcher" ? undefined : name.split('.');
    if (!path) {
      (globalThis as Record<symbol, unknown>)[GLOBAL_DISPATCHER] = value;
      continue;
    }
    const owner = path
      .slice(0, -1)
      .reduce<Record<string, unknown>>((o, key) => o[key] as Record<string, unknown>, {
        console,
        process,
        globalThis,
        Date,
        Math,
      } as Record<string, unknown>);
    owner[path.at(-1)!] = value;
  }
}

/** What differs between two snapshots, as lines a person can act on. */
export function leftoversBetween(before: ProcessState, after: ProcessState): string[] {
  const problems: string[] = [];
  const names = new Set([...Object.keys(before.env), ...Object.keys(after.env)]);
  for (const name of [...names].sort()) {
    if (before.env[name] === after.env[name]) continue;
    // Names only: a value may be a secret.
    if (before.env[name] === undefined) problems.push(`environment variable ${name} was set`);
    else if (after.env[name] === undefined)
      problems.push(`environment variable ${name} was removed`);
    else problems.push(`environment variable ${name} was changed`);
  }
  if (before.cwd !== after.cwd) problems.push(`working directory changed to ${after.cwd}`);
  if (before.exitCode !== after.exitCode) {
    problems.push(`process.exitCode left at ${String(after.exitCode)}`);
  }
  for (const event of WATCHED_EVENTS) {
    const added = after.listeners[event]! - before.listeners[event]!;
    if (added > 0) problems.push(`${added} process '${event}' listener(s) left`);
  }
  // More than a handful in one file is a listener added per call, not per module.
  if (after.exitListeners - before.exitListeners > 4) {
    problems.push(`${after.exitListeners - before.exitListeners} process 'exit' listeners left`);
  }
  for (const [name, was] of Object.entries(before.globals)) {
    // undefined before: made on first use (undici's dispatcher), not replaced.
    if (was !== undefined && after.globals[name] !== was)
      problems.push(`${name} replaced (a spy or stub not restored?)`);
  }
  return problems;
}
