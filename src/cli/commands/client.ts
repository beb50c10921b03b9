import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CommanderError, Option, type Command } from 'commander';
import {
  ApiClient,
  ApiClientError,
  ApiUnreachableError,
  sessionProgress,
} from '../../api/index.js';
import { ENV_STATES, type EnvState } from '../../events/index.js';
import type { CheckResult, SessionView } from '../../sessions/types.js';
import { configFileOf } from './config.js';

/** Exit codes of the client commands (documented in `--help` and the README). */
export const CLIENT_EXIT = {
  ok: 0,
  /** The API refused the request (its error code is printed) or something unexpected failed. */
  refused: 1,
  /** Bad usage or configuration (no token, malformed URL, unreadable key file). */
  usage: 2,
  /** `check` ran and the lab is not solved yet. */
  checkFailed: 3,
  /** Nothing answered at the API URL. */
  unreachable: 4,
  /** The API rejected the token (401). */
  unauthorized: 5,
} as const;

const EXIT_HELP = `
Exit codes: 0 ok, 1 the API refused the request (code printed), 2 bad usage or
configuration, 3 check not passed, 4 API unreachable, 5 token rejected.
API URL: --api-url, else $LABVIRT_API_URL, else api.host/api.port of the config.
Token: the environment variable named by api.tokenEnv (default LABVIRT_API_TOKEN).`;

interface ClientOptions {
  apiUrl?: string;
  json?: boolean;
  as?: string;
}

interface Connection {
  client: ApiClient;
  url: string;
  tokenEnv: string;
  json: boolean;
  out: (line?: string) => void;
}

/** Fails the command with an exit code after printing why (main() sets process.exitCode). */
function fail(exitCode: number, message: string): never {
  process.stderr.write(`labvirt: ${message}\n`);
  throw new CommanderError(exitCode, 'labvirt.client', message);
}

/** A server bound to all interfaces is reached on loopback. */
function urlOfConfig(host: string, port: number): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

async function connect(cmd: Command): Promise<Connection> {
  const opts = cmd.optsWithGlobals<ClientOptions>();
  // Loaded when a command runs: `--help` must not pay for the config schema.
  const { loadConfig } = await import('../../config/index.js');
  const config = loadConfig({ file: configFileOf(cmd) });
  const url =
    opts.apiUrl ?? process.env.LABVIRT_API_URL ?? urlOfConfig(config.api.host, config.api.port);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    fail(CLIENT_EXIT.usage, `"${url}" is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    fail(CLIENT_EXIT.usage, `the API URL must be http:// or https://, got ${url}`);
  }
  const tokenEnv = config.api.tokenEnv;
  const token = process.env[tokenEnv];
  if (!token) {
    fail(
      CLIENT_EXIT.usage,
      `set $${tokenEnv} to the API token (the one \`labvirt serve\` was started with; ` +
        '`labvirt dev` writes it to .labvirt/dev/api-token)',
    );
  }
  const json = Boolean(opts.json);
  return {
    client: new ApiClient({ url, token, asStudent: opts.as }),
    url,
    tokenEnv,
    json,
    out: (line = '') => void process.stdout.write(line + '\n'),
  };
}

/** Runs one API call and turns failures into a clear message and exit code. */
async function run<T>(conn: Connection, call: (client: ApiClient) => Promise<T>): Promise<T> {
  try {
    return await call(conn.client);
  } catch (err) {
    if (err instanceof ApiUnreachableError) {
      fail(
        CLIENT_EXIT.unreachable,
        `cannot reach the labvirt API at ${conn.url} (${err.reason}): is \`labvirt serve\` running at ${conn.url}? ` +
          'Point --api-url or $LABVIRT_API_URL elsewhere if not.',
      );
    }
    if (err instanceof ApiClientError) {
      if (err.status === 401) {
        fail(
          CLIENT_EXIT.unauthorized,
          `the API at ${conn.url} rejected the token in $${conn.tokenEnv} (401): ` +
            'it must match the token the server was started with',
        );
      }
      if (conn.json)
        process.stdout.write(JSON.stringify({ error: errorJson(err) }, null, 2) + '\n');
      fail(CLIENT_EXIT.refused, `${err.code}: ${err.message}${detailText(err)}`);
    }
    throw err;
  }
}

function errorJson(err: ApiClientError) {
  return { code: err.code, message: err.message, status: err.status, details: err.details };
}

/** The details worth a line for a human (what to do next). */
function detailText(err: ApiClientError): string {
  const d = err.details ?? {};
  if (Array.isArray(d.sessions) && d.sessions.length)
    return `\n  your sessions: ${d.sessions.join(', ')}`;
  if (Array.isArray(d.available) && d.available.length)
    return `\n  available labs: ${d.available.join(', ')}`;
  return '';
}

function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--api-url <url>', 'labvirt API URL (default $LABVIRT_API_URL, else from the config)')
    .option('--json', 'print machine-readable JSON')
    .option('--as <student>', 'act on behalf of this student (X-Labvirt-Student)')
    .addHelpText('after', EXIT_HELP)
    .exitOverride((err) => {
      // Commander reports usage mistakes with 1; ours is 2 (1 means the API refused).
      throw err.exitCode === 1 ? new CommanderError(CLIENT_EXIT.usage, err.code, err.message) : err;
    });
}

function relative(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const minutes = Math.round((Date.parse(iso) - now) / 60_000);
  if (Number.isNaN(minutes)) return iso;
  if (minutes >= 0) return `${iso} (in ${minutes} min)`;
  return `${iso} (${-minutes} min ago)`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
}

/** Quotes a path for a POSIX shell command the user will paste. */
function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:@-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

function printSession(out: Connection['out'], s: SessionView, keyFile?: string): void {
  out(`Session ${s.id} for ${s.student}: lab ${s.labId} (${s.labTitle}), flavor ${s.flavor}`);
  out(`  state:    ${s.state}${s.endedReason ? ` (${s.endedReason})` : ''}`);
  if (s.queue) {
    out(`  waiting:  position ${s.queue.position} in line, about ${s.queue.estimateSeconds} s`);
  }
  if (s.state !== 'ended') {
    out(`  expires:  ${relative(s.expiresAt)}`);
    if (s.maxExpiresAt) out(`  latest:   ${s.maxExpiresAt} (with extensions)`);
  }
  out(`  hints:    ${s.hintsUsed}/${s.hintsTotal} used`);
  if (s.state !== 'ended') {
    // A node that came back as a new VM has its image's disk again.
    for (const r of s.nodeRestarts ?? [])
      out(
        `  restart:  ${r.node} restarted at ${r.at}: its disk was reset, your changes on it are gone`,
      );
  }
  const c = s.connection;
  if (c && s.state !== 'ended') {
    const command = keyFile
      ? `ssh -i ${shellQuote(keyFile)} -p ${c.port} ${c.user}@${c.host}`
      : c.command;
    out(`  connect:  ${command}`);
    if (c.nodes.length)
      out(`  nodes:    ${c.nodes.join(', ')} (ssh <node> from the control plane)`);
  }
  if (s.ports && s.state !== 'ended') {
    // The NodePort/LoadBalancer Services of the student's cluster, reachable from outside.
    if (s.ports.published.length === 0 && s.ports.refused.length === 0)
      out('  ports:    none published (create a NodePort Service in your cluster)');
    for (const [i, p] of s.ports.published.entries()) {
      const proto = p.protocol === 'TCP' ? '' : `/${p.protocol}`;
      out(`  ${i === 0 ? 'ports:   ' : '         '} ${p.service}:${p.port}${proto} → ${p.address}`);
    }
    for (const r of s.ports.refused) out(`  refused:  ${r.message}`);
  }
}

/**
 * The terminal-in-the-browser link of an active session (single use, so a
 * fresh one each time). A server without web pages simply has none to give.
 */
async function printWebLink(conn: Connection, s: SessionView): Promise<void> {
  if (s.state !== 'active') return;
  const link = await conn.client.webLink(s.id).catch(() => undefined);
  if (link) conn.out(`  browser:  ${link.url} (opens once)`);
}

/** Saves a private key next to the user, never over an existing file. */
function savePrivateKey(sessionId: string, key: string, requested?: string): string {
  const base = resolve(requested ?? `${sessionId}.key`);
  for (let n = 0; n < 10; n++) {
    const path = n === 0 ? base : `${base}.${n}`;
    try {
      writeFileSync(path, key.endsWith('\n') ? key : key + '\n', { mode: 0o600, flag: 'wx' });
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        fail(
          CLIENT_EXIT.refused,
          `cannot save the session's private key to ${path}: ${(err as Error).message}`,
        );
      }
    }
  }
  fail(
    CLIENT_EXIT.refused,
    `cannot save the session's private key: ${base} and its numbered variants exist`,
  );
}

function readPublicKey(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    fail(CLIENT_EXIT.usage, `cannot read the public key ${file}: ${(err as Error).message}`);
  }
  if (text.includes('PRIVATE KEY')) {
    fail(
      CLIENT_EXIT.usage,
      `${file} is a private key: pass the .pub file (never send a private key)`,
    );
  }
  return text;
}

/** The longest one request waits for a change (the API allows 60 s; proxies often cut at 60). */
const LONG_POLL_SECONDS = 25;

/**
 * Follows the session until it is active or ended; `undefined` when the time
 * is up. Each request is a long poll: the API answers when the session moves
 * on (its place in line, preparing, active), so the wait costs one request
 * per change, not one a second.
 */
async function waitUntilReady(
  conn: Connection,
  view: SessionView,
  timeoutMs: number,
): Promise<SessionView | undefined> {
  const deadline = Date.now() + timeoutMs;
  let current = view;
  let lastNote = '';
  while (current.state !== 'active' && current.state !== 'ended') {
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    const note = current.queue
      ? `waiting for an environment: in line #${current.queue.position}, about ${current.queue.estimateSeconds} s`
      : current.slow
        ? `preparing your environment: ${current.slow.message}…`
        : `preparing your environment (${current.state})…`;
    if (!conn.json && note !== lastNote) process.stderr.write(note + '\n');
    lastNote = note;
    const wait = {
      after: sessionProgress(current),
      seconds: Math.min(LONG_POLL_SECONDS, left / 1000),
    };
    current = await run(conn, (c) => c.status(view.id, wait));
  }
  return current;
}

function printCheck(out: Connection['out'], r: CheckResult): void {
  for (const c of r.checks) {
    out(
      `${c.passed ? '✓' : '✗'} ${c.name} (${c.points} pt${c.points === 1 ? '' : 's'}): ${c.description}`,
    );
    for (const m of c.messages) out(`    FAIL: ${m.replace(/^FAIL:\s*/, '')}`);
  }
  out(`Score ${r.score}/${r.maxScore}: ${r.passed ? 'passed' : 'not passed yet'}`);
}

/** Finds a command group another file may have created already (e.g. `pool`). */
function group(program: Command, name: string, description: string): Command {
  return (
    program.commands.find((c) => c.name() === name) ??
    program.command(name).description(description)
  );
}

export function registerClientCommands(program: Command): void {
  withClientOptions(
    program
      .command('start')
      .description('start a lab session and print how to connect')
      .requiredOption('--lab <lab>', 'lab id (see `labvirt labs list`, or GET /v1/labs on the API)')
      .option('--student <student>', 'student id (Slack id or email); defaults to --as')
      .option(
        '--public-key <file>',
        'your OpenSSH public key (.pub); a key pair is made for you otherwise',
      )
      .option(
        '--key-file <file>',
        'where to save the generated private key (default ./<session>.key)',
      )
      .option('--request-id <id>', 'idempotency key: repeating it returns the same session')
      .option('--no-wait', 'return at once instead of waiting until the environment is ready')
      .option('--timeout <seconds>', 'how long to wait for the environment', '600'),
  ).action(async (opts: Record<string, string | boolean | undefined>, cmd: Command) => {
    const conn = await connect(cmd);
    const student = (opts.student as string | undefined) ?? (opts.as as string | undefined);
    if (!student)
      fail(CLIENT_EXIT.usage, 'say who the session is for: --student <id> (or --as <id>)');
    const publicKey = opts.publicKey ? readPublicKey(String(opts.publicKey)) : undefined;
    const timeout = Number(opts.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0)
      fail(CLIENT_EXIT.usage, '--timeout must be a number of seconds');
    let view = await run(conn, (c) =>
      c.start({
        student,
        labId: String(opts.lab),
        publicKey,
        requestId: opts.requestId as string | undefined,
      }),
    );
    // The private key is in this response only: save it before anything else.
    const keyFile = view.privateKey
      ? savePrivateKey(view.id, view.privateKey, opts.keyFile as string | undefined)
      : undefined;
    delete view.privateKey;
    if (keyFile && !conn.json) {
      conn.out(`Private key saved to ${keyFile} (mode 0600); it is not shown again.`);
    }
    let timedOut = false;
    if (opts.wait !== false) {
      const ready = await waitUntilReady(conn, view, timeout * 1000);
      if (ready) view = ready;
      else timedOut = true;
    }
    if (conn.json) conn.out(JSON.stringify({ ...view, privateKeyFile: keyFile }, null, 2));
    else {
      printSession(conn.out, view, keyFile);
      await printWebLink(conn, view);
    }
    if (timedOut) {
      fail(
        CLIENT_EXIT.refused,
        `session ${view.id} is still ${view.state} after ${timeout} s; ` +
          `follow it with \`labvirt status ${view.id}\``,
      );
    }
    if (view.state === 'ended') {
      fail(
        CLIENT_EXIT.refused,
        `session ${view.id} ended (${view.endedReason ?? 'unknown reason'})`,
      );
    }
  });

  withClientOptions(
    program
      .command('stop')
      .argument('<session>', 'session id')
      .description('end a session and free its environment'),
  ).action(async (session: string, _opts, cmd: Command) => {
    const conn = await connect(cmd);
    const view = await run(conn, (c) => c.stop(session));
    if (conn.json) return conn.out(JSON.stringify(view, null, 2));
    conn.out(`Session ${view.id} stopped${view.endedReason ? ` (${view.endedReason})` : ''}.`);
  });

  withClientOptions(
    program
      .command('extend')
      .argument('<session>', 'session id')
      .description('push back the expiry of a session'),
  ).action(async (session: string, _opts, cmd: Command) => {
    const conn = await connect(cmd);
    const view = await run(conn, (c) => c.extend(session));
    if (conn.json) return conn.out(JSON.stringify(view, null, 2));
    conn.out(`Session ${view.id} now expires at ${relative(view.expiresAt)}.`);
    if (view.maxExpiresAt) conn.out(`Extensions can reach ${view.maxExpiresAt} at most.`);
  });

  withClientOptions(
    program.command('status').argument('<session>', 'session id').description('show a session'),
  ).action(async (session: string, _opts, cmd: Command) => {
    const conn = await connect(cmd);
    const view = await run(conn, (c) => c.status(session));
    if (conn.json) return conn.out(JSON.stringify(view, null, 2));
    printSession(conn.out, view);
    await printWebLink(conn, view);
  });

  withClientOptions(
    program
      .command('sessions')
      .description('list sessions (running ones unless --all)')
      .option('--student <student>', 'only this student')
      .option('--all', 'include ended sessions'),
  ).action(async (opts: { student?: string; all?: boolean }, cmd: Command) => {
    const conn = await connect(cmd);
    const sessions = await run(conn, (c) =>
      c.list({ student: opts.student, includeEnded: opts.all }),
    );
    if (conn.json) return conn.out(JSON.stringify(sessions, null, 2));
    if (sessions.length === 0) return conn.out('no sessions');
    const rows = [['SESSION', 'STUDENT', 'LAB', 'STATE', 'ENV', 'EXPIRES']];
    for (const s of sessions) {
      rows.push([
        s.id,
        s.student,
        s.labId,
        s.state === 'ended' ? `ended (${s.endedReason ?? '?'})` : s.state,
        s.envId ?? '-',
        s.expiresAt ?? '-',
      ]);
    }
    table(rows).forEach((l) => conn.out(l));
  });

  withClientOptions(
    program
      .command('check')
      .argument('<session>', 'session id')
      .description(
        'grade the lab now: each check with its points and what failed (exit 3 if not passed)',
      ),
  ).action(async (session: string, _opts, cmd: Command) => {
    const conn = await connect(cmd);
    const result = await run(conn, (c) => c.check(session));
    if (conn.json) conn.out(JSON.stringify(result, null, 2));
    else printCheck(conn.out, result);
    if (!result.passed)
      throw new CommanderError(CLIENT_EXIT.checkFailed, 'labvirt.check', 'not passed');
  });

  withClientOptions(
    program
      .command('hint')
      .argument('<session>', 'session id')
      .description('reveal the next hint of the lab'),
  ).action(async (session: string, _opts, cmd: Command) => {
    const conn = await connect(cmd);
    const hint = await run(conn, (c) => c.hint(session));
    if (conn.json) return conn.out(JSON.stringify(hint, null, 2));
    conn.out(`Hint ${hint.index}/${hint.total}: ${hint.text}`);
  });

  withClientOptions(
    group(program, 'pool', 'the warm pool of environments')
      .command('status')
      .description('environments per flavor and state, targets and the waiting line'),
  ).action(async (_opts, cmd: Command) => {
    const conn = await connect(cmd);
    const pool = await run(conn, (c) => c.poolStatus());
    if (conn.json) return conn.out(JSON.stringify(pool, null, 2));
    if (pool.flavors.length === 0) return conn.out('no flavors configured');
    const states = ENV_STATES.filter((s) => s !== 'deleted');
    const rows = [
      ['FLAVOR', ...states.map((s) => s.toUpperCase()), 'TARGET', 'MAX', 'WAITING', 'CAPACITY'],
    ];
    for (const f of pool.flavors) {
      rows.push([
        f.flavor,
        ...states.map((s) => String(f.counts[s] ?? 0)),
        String(f.targetWarm),
        String(f.maxTotal),
        String(f.waiting),
        f.capacityBlocked ? `blocked: ${f.capacityReason ?? 'host cluster full'}` : 'ok',
      ]);
    }
    table(rows).forEach((l) => conn.out(l));
    for (const f of pool.flavors) {
      for (const t of f.scheduledTargets) {
        conn.out(
          `${f.flavor}: scheduled target "${t.name}" keeps ${t.minWarm} warm from ${t.from} until ${t.until}`,
        );
      }
    }
  });

  withClientOptions(
    group(program, 'env', 'environments on the host cluster')
      .command('list')
      .description('list environments')
      .option('--flavor <flavor>', 'only this flavor, e.g. v1.30-3node')
      .addOption(new Option('--state <state>', 'only this state').choices(ENV_STATES)),
  ).action(async (opts: { flavor?: string; state?: EnvState }, cmd: Command) => {
    const conn = await connect(cmd);
    const envs = await run(conn, (c) => c.listEnvs({ flavor: opts.flavor, state: opts.state }));
    if (conn.json) return conn.out(JSON.stringify(envs, null, 2));
    if (envs.length === 0) return conn.out('no environments');
    const rows = [['ENV', 'NAMESPACE', 'FLAVOR', 'STATE', 'SESSION', 'STUDENT', 'LAB', 'CREATED']];
    for (const e of envs) {
      rows.push([
        e.id,
        e.namespace,
        e.flavor,
        e.state,
        e.sessionId ?? '-',
        e.student ?? '-',
        e.labId ?? '-',
        e.createdAt,
      ]);
    }
    table(rows).forEach((l) => conn.out(l));
  });
}
