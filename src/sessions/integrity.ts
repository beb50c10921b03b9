import type { Executor } from '../ssh/index.js';
import type { EnvNode } from '../pool/nodes.js';
import { ScriptFailedError, type SlowGuestPatience, type StepFailure } from './scripts.js';
import type { CheckOutcome } from './types.js';

/**
 * Grading integrity: a student with root in their VMs could replace the tools
 * a check relies on (`kubectl`, `bash`, `sudo`, …) or put a fake one earlier
 * on PATH, and so fake a pass. Before the student gets in, labvirt records,
 * per node, the guest's PATH and every copy of these tools in its
 * directories (what each resolves to and its sha256). Before each check it
 * takes the same inventory again and grades only when nothing changed; the
 * checks then run with that recorded PATH, not with one the student set.
 *
 * Hashing is costly (kubectl alone is a 50 MB file) and a class claims at
 * once, so the hashing happens when an env turns warm (takeToolsBaseline,
 * before anyone had access): prepare, after the lab's setup, reuses the hash
 * of every file whose stat identity (device, inode, size, mtime, ctime) is
 * unchanged and hashes only what the setup changed. Checks always hash in
 * full: by then the student has root and can forge stat data.
 */

/** The tools checks rely on, looked up in every directory of the recorded PATH. */
export const CHECKED_TOOLS = [
  'kubectl',
  'bash',
  'sh',
  'sudo',
  'env',
  'timeout',
  'grep',
  'awk',
  'sed',
  'cat',
  'jq',
  'curl',
  'crictl',
  'systemctl',
] as const;

/** Paths labvirt's own command runner uses whatever PATH says (see src/ssh/bundle.ts). */
const FIXED_PATHS = ['/bin/sh', '/bin/bash'];

/** Searched besides the guest's own PATH, so a copy there cannot hide from the inventory. */
const ALWAYS_SCANNED = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];

const SAFE_DIR = /^\/[A-Za-z0-9._/-]*$/;
const DONE = 'labvirt-tools-done';
const SHA256 = /^[0-9a-f]{64}$/;

/** The inventory's own time limit on a quiet guest (at prepare, SlowGuestPatience stretches it). */
export const INVENTORY_TIMEOUT_SECONDS = 60;

/**
 * Runs as root (with bash, as every script labvirt runs) with the guest's
 * PATH (at record time) or with the recorded one. Its own helpers are called
 * by absolute path under /usr, so a planted `realpath` or `sha256sum` on PATH
 * does not take part. Directory and tool names arrive as environment data
 * (checked against SAFE_DIR), never as shell text. It starts a handful of
 * processes whatever the number of tools (one realpath, one stat, one
 * sha256sum for every file at once): on a loaded guest each process costs
 * tens of ms, and the per-file helpers of the first version cost more than
 * the hashing.
 */
const INVENTORY_SCRIPT = `set -uf
printf 'path\\t%s\\n' "$PATH"
files=()
# Joined first: only an expansion's result is split, so a literal ':' between
# the two would glue PATH's last directory to the first scanned one.
dirs="$PATH:$LABVIRT_SCAN_DIRS"
IFS=:
for d in $dirs; do
  IFS=' '
  for n in $LABVIRT_TOOLS; do
    f="$d/$n"
    if [ -e "$f" ] || [ -L "$f" ]; then files+=("$f"); fi
  done
  IFS=:
done
IFS=' '
for f in $LABVIRT_FIXED; do files+=("$f"); done
unset IFS
# What each resolves to, in one process: -m answers for every name (a
# dangling or looping link too), so the answers line up with the names.
mapfile -d '' resolved < <(/usr/bin/realpath -m -z -- "\${files[@]}")
if [ "\${#resolved[@]}" -ne "\${#files[@]}" ]; then
  echo 'realpath did not answer for every file' >&2
  exit 3
fi
# Each regular file once (merged /usr: /bin/kubectl and /usr/bin/kubectl are one file).
declare -A hash=() ident=() listed=()
unique=()
for r in "\${resolved[@]}"; do
  if [ -z "\${listed[$r]+x}" ] && [ -f "$r" ]; then
    listed[$r]=1
    unique+=("$r")
  fi
done
# Stat identity (device, inode, size, mtime, ctime) when asked for: the
# warm-up inventory keeps it, and prepare reuses the hash of a file whose
# identity did not change.
if [ -n "\${LABVIRT_IDENTITY:-}" ] && [ "\${#unique[@]}" -gt 0 ]; then
  while IFS= read -r -d '' rec; do
    ident["/\${rec#*' /'}"]=\${rec%%' /'*}
  done < <(/usr/bin/stat -L --printf '%d %i %s %y %z %n\\0' -- "\${unique[@]}" 2>/dev/null)
fi
declare -A known=()
while IFS=$'\\t' read -r kid ksum kfile; do
  [ -n "$kfile" ] && known[$kfile]="$kid"$'\\t'"$ksum"
done <<<"\${LABVIRT_KNOWN:-}"
todo=()
# One file under two names (a bind mount: same device and inode) is read once.
declare -A first=()
same=()
for r in "\${unique[@]}"; do
  k=\${known[$r]:-}
  id=\${ident[$r]:-}
  if [ -n "$k" ] && [ -n "$id" ] && [ "\${k%%$'\\t'*}" = "$id" ]; then
    hash[$r]=\${k#*$'\\t'}
  elif [ -n "$id" ] && [ -n "\${first[$id]:-}" ]; then
    same+=("$r")
  else
    [ -n "$id" ] && first[$id]=$r
    todo+=("$r")
  fi
done
if [ "\${#todo[@]}" -gt 0 ]; then
  while IFS= read -r -d '' rec; do
    hash["\${rec:66}"]=\${rec:0:64}
  done < <(/usr/bin/sha256sum -z -- "\${todo[@]}" 2>/dev/null)
fi
for r in "\${same[@]}"; do
  hash[$r]=\${hash[\${first[\${ident[$r]}]}]:-}
done
for i in "\${!files[@]}"; do
  r=\${resolved[$i]}
  h=\${hash[$r]:-} id=\${ident[$r]:-}
  # A name no line can carry is recorded as unreadable.
  case "$r" in *$'\\n'* | *$'\\t'*) r='?' h= id= ;; esac
  printf 'file\\t%s\\t%s\\t%s\\t%s\\n' "\${files[$i]}" "$r" "$h" "$id"
done
echo ${DONE}
`;

/** One node's tools as labvirt recorded them. */
export interface NodeTools {
  /** The guest's PATH when recorded; checks run with it. */
  path: string;
  /** Tool file → `<what it resolves to> <sha256>` (empty parts when unreadable). */
  files: Record<string, string>;
}

/** Per node name (`control-plane`, `worker-1`, …). */
export type EnvTools = Record<string, NodeTools>;

/**
 * A node's tools as taken when its env turned warm (no student has had
 * access yet), with the stat identity of every file hashed: resolved file →
 * `<device> <inode> <size> <mtime> <ctime>`.
 */
export interface NodeToolsBaseline extends NodeTools {
  identities: Record<string, string>;
}

/** Per node name: what prepare reuses the hashes of. */
export type EnvToolsBaseline = Record<string, NodeToolsBaseline>;

interface InventoryContext {
  executor: Executor;
  envId: string;
  nodes: EnvNode[];
}

interface InventoryOptions {
  /** The PATH to scan with (the guest's own when absent). */
  path?: string;
  /** Also report each file's stat identity. */
  identities?: boolean;
  /** Hashes to reuse for files whose identity is unchanged (implies identities). */
  known?: Iterable<KnownHash>;
  timeoutMs: number;
}

type Inventory =
  | { ok: true; tools: NodeTools; identities: Record<string, string> }
  | { ok: false; timedOut: boolean; reason: string };

const UNVERIFIABLE = 'the shell labvirt runs checks with does not behave as set up';

/** A hash that may be reused for the file while its stat identity is this one. */
interface KnownHash {
  resolved: string;
  identity: string;
  sum: string;
}

/** The hashes of a warm-up record, with the identity each was taken at. */
function knownOf(record: NodeToolsBaseline): KnownHash[] {
  return Object.values(record.files).map((entry) => {
    const cut = entry.lastIndexOf(' ');
    const resolved = entry.slice(0, cut);
    return { resolved, sum: entry.slice(cut + 1), identity: record.identities[resolved] ?? '' };
  });
}

/** `<identity>\t<sha256>\t<file>` lines for the script (what it cannot carry is left out). */
function knownLines(known: Iterable<KnownHash>): string {
  const lines = new Set<string>();
  for (const { resolved, identity, sum } of known) {
    if (!identity || !SHA256.test(sum) || /[\t\n]/.test(resolved + identity)) continue;
    lines.add(`${identity}\t${sum}\t${resolved}`);
  }
  return [...lines].join('\n');
}

/**
 * Hashes from earlier warm-up inventories in this process, by resolved file
 * and identity. Envs boot from one image, so most files show the same
 * identity (device, inode, size, mtime and ctime to the nanosecond) in every
 * env: the next env's warm-up reuses the hash instead of reading kubectl
 * again. Only warm-up inventories feed it — at warm-up nothing but
 * cloud-init and labvirt has run in an env, so a file with the same identity
 * and other content would need a forged ctime in an env nobody had access
 * to. Bounded: the oldest entries go first.
 */
const warmUpHashes = new Map<string, KnownHash>();
const WARM_UP_HASHES_KEPT = 2000;

function rememberWarmUpHashes(record: NodeToolsBaseline): void {
  for (const known of knownOf(record)) {
    if (!known.identity || !SHA256.test(known.sum)) continue;
    const key = `${known.resolved}\0${known.identity}`;
    warmUpHashes.delete(key);
    warmUpHashes.set(key, known);
  }
  for (const key of warmUpHashes.keys()) {
    if (warmUpHashes.size <= WARM_UP_HASHES_KEPT) break;
    warmUpHashes.delete(key);
  }
}

async function inventory(
  ctx: InventoryContext,
  node: EnvNode,
  opts: InventoryOptions,
): Promise<Inventory> {
  const result = await ctx.executor.exec(
    { envId: ctx.envId, node: node.node, ip: node.ip },
    INVENTORY_SCRIPT,
    {
      env: {
        ...(opts.path ? { PATH: opts.path } : {}),
        LABVIRT_TOOLS: CHECKED_TOOLS.join(' '),
        LABVIRT_SCAN_DIRS: ALWAYS_SCANNED.join(':'),
        LABVIRT_FIXED: FIXED_PATHS.join(' '),
        ...(opts.identities || opts.known ? { LABVIRT_IDENTITY: '1' } : {}),
        ...(opts.known ? { LABVIRT_KNOWN: knownLines(opts.known) } : {}),
      },
      timeoutMs: opts.timeoutMs,
      runAs: 'root',
    },
  );
  if (result.timedOut) {
    return { ok: false, timedOut: true, reason: 'its tool inventory did not finish in time' };
  }
  const lines = result.stdout.split('\n');
  if (result.exitCode !== 0 || !lines.includes(DONE)) {
    return { ok: false, timedOut: false, reason: UNVERIFIABLE };
  }
  return parseInventory(lines);
}

/**
 * Reads the script's output strictly: a line of any other shape means the
 * shell did not run the script as written (or something printed into it),
 * and a file listed twice with different answers reads as unreadable, so
 * neither can stand in for a recorded tool.
 */
function parseInventory(lines: string[]): Inventory {
  let recordedPath = '';
  const files: Record<string, string> = {};
  const identities: Record<string, string> = {};
  for (const line of lines) {
    if (line === '' || line === DONE) continue;
    const [kind, ...rest] = line.split('\t');
    if (kind === 'path' && rest.length === 1) {
      recordedPath = rest[0]!;
    } else if (kind === 'file' && rest.length === 4) {
      const [file, resolved, sum, identity] = rest as [string, string, string, string];
      const entry = `${resolved} ${sum}`;
      files[file] = files[file] === undefined || files[file] === entry ? entry : '? ';
      if (identity) identities[resolved] = identity;
    } else {
      return { ok: false, timedOut: false, reason: UNVERIFIABLE };
    }
  }
  return { ok: true, tools: { path: recordedPath, files }, identities };
}

/** A PATH made only of absolute directories without shell-special characters. */
function safePath(path: string): string {
  const dirs = path.split(':').filter((d) => SAFE_DIR.test(d) && !d.split('/').includes('..'));
  return [...new Set(dirs.length > 0 ? dirs : ALWAYS_SCANNED)].join(':');
}

/** A node's tools could not be inventoried: its shell did not run labvirt's script as written. */
export class ToolsUnverifiableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolsUnverifiableError';
  }
}

/** How a timed-out inventory at prepare is named to the student and in logs. */
export const INVENTORY_STEP = "labvirt's tool inventory";

interface TakeOptions {
  identities: boolean;
  baseline?: EnvToolsBaseline;
  /** Reused for every node (besides its baseline's). */
  known?: KnownHash[];
  patience?: SlowGuestPatience;
  timeoutSeconds: number;
}

type Taken = { tools: NodeTools; identities: Record<string, string> };

/** One node's inventory, taken again with the PATH checks will get when the guest's had odd entries. */
async function takeNode(
  ctx: InventoryContext,
  node: EnvNode,
  opts: TakeOptions,
  seconds: number,
): Promise<Inventory> {
  const recorded = opts.baseline?.[node.node];
  const known = [...(opts.known ?? []), ...(recorded ? knownOf(recorded) : [])];
  const base = {
    identities: opts.identities,
    known: known.length > 0 ? known : undefined,
    timeoutMs: seconds * 1000,
  };
  const taken = await inventory(ctx, node, base);
  // So the record and later inventories scan the same directories.
  if (taken.ok && safePath(taken.tools.path) !== taken.tools.path) {
    return inventory(ctx, node, { ...base, path: safePath(taken.tools.path) });
  }
  return taken;
}

/**
 * Every node's inventory at once. A node whose inventory runs out of time is
 * a slow guest, not a broken one: with `patience` (prepare) it is taken once
 * more with the longer time and a second timeout throws ScriptFailedError
 * (timedOut), which prepare answers as it answers a lab step that ran out of
 * time; without it (warm-up, checks) running out of time is unverifiable.
 */
async function takeAll(ctx: InventoryContext, opts: TakeOptions): Promise<Map<string, Taken>> {
  const step = { timeoutSeconds: opts.timeoutSeconds };
  let seconds = opts.patience?.timeoutSeconds(step) ?? step.timeoutSeconds;
  const taken = new Map<string, Taken>();
  let pending = ctx.nodes;
  for (;;) {
    const results = await Promise.all(
      pending.map(async (node) => ({ node, result: await takeNode(ctx, node, opts, seconds) })),
    );
    const late: EnvNode[] = [];
    for (const { node, result } of results) {
      if (result.ok) taken.set(node.node, result);
      else if (result.timedOut && opts.patience) late.push(node);
      else throw new ToolsUnverifiableError(`${node.node}: ${result.reason}`);
    }
    if (late.length === 0) return taken;
    const failure: StepFailure = {
      file: INVENTORY_STEP,
      node: late[0]!.node,
      exitCode: null,
      timedOut: true,
      timeoutSeconds: seconds,
      output: '',
    };
    const retrySeconds = await opts.patience?.retryAfterTimeout(failure, step);
    if (retrySeconds === undefined) throw new ScriptFailedError(failure);
    seconds = retrySeconds;
    pending = late;
  }
}

export interface RecordToolsOptions {
  /**
   * What the env's warm-up inventory found: a file whose stat identity is
   * unchanged since then keeps its hash (only the lab's setup ran in between,
   * and no student had access), so only what the setup changed is hashed.
   */
  baseline?: EnvToolsBaseline;
  /**
   * Nodes on which nothing but labvirt's own key install ran since warm-up
   * (no step of the lab's setup or prepare selects them): their warm-up
   * record stands as it is, without a command.
   */
  untouched?: readonly string[];
  /** Prepare's patience with a slow guest (see takeAll). */
  patience?: SlowGuestPatience;
  /** One node's time limit on a quiet guest. */
  timeoutSeconds?: number;
}

/**
 * Records every node's tools (before the student gets in). Throws
 * ToolsUnverifiableError when a node's inventory cannot be taken: such an env
 * cannot be graded safely.
 */
export async function recordTools(
  ctx: InventoryContext,
  opts: RecordToolsOptions = {},
): Promise<EnvTools> {
  const kept = new Map<string, NodeTools>();
  for (const node of opts.untouched ?? []) {
    const recorded = opts.baseline?.[node];
    if (recorded) kept.set(node, { path: recorded.path, files: recorded.files });
  }
  const taken = await takeAll(
    { ...ctx, nodes: ctx.nodes.filter((n) => !kept.has(n.node)) },
    {
      identities: false,
      baseline: opts.baseline,
      patience: opts.patience,
      timeoutSeconds: opts.timeoutSeconds ?? INVENTORY_TIMEOUT_SECONDS,
    },
  );
  return Object.fromEntries([...kept, ...[...taken].map(([node, t]) => [node, t.tools] as const)]);
}

/**
 * The full inventory of a freshly booted env, hashes and stat identities,
 * taken when it turns warm: before any student, and before any lab, has
 * touched it.
 */
export async function takeToolsBaseline(
  ctx: InventoryContext,
  opts: { timeoutSeconds: number },
): Promise<EnvToolsBaseline> {
  const taken = await takeAll(ctx, {
    identities: true,
    known: [...warmUpHashes.values()],
    timeoutSeconds: opts.timeoutSeconds,
  });
  const baseline: EnvToolsBaseline = Object.fromEntries(
    [...taken].map(([node, t]) => [node, { ...t.tools, identities: t.identities }]),
  );
  for (const record of Object.values(baseline)) rememberWarmUpHashes(record);
  return baseline;
}

/** Reads a stored warm-up inventory; undefined when absent or unreadable (prepare then hashes all). */
export function parseToolsBaseline(stored: string | undefined): EnvToolsBaseline | undefined {
  const tools = parseTools(stored) as EnvToolsBaseline | undefined;
  if (!tools) return undefined;
  for (const node of Object.values(tools)) {
    if (typeof node.identities !== 'object' || node.identities === null) return undefined;
  }
  return tools;
}

/** Reads a stored record; undefined when absent or unreadable. */
export function parseTools(stored: string | undefined): EnvTools | undefined {
  if (!stored) return undefined;
  try {
    const value = JSON.parse(stored) as EnvTools;
    if (typeof value !== 'object' || value === null) return undefined;
    for (const tools of Object.values(value)) {
      if (typeof tools?.path !== 'string' || typeof tools.files !== 'object') return undefined;
    }
    return value;
  } catch {
    return undefined;
  }
}

const baseName = (file: string) => file.slice(file.lastIndexOf('/') + 1);

/** What differs between the recorded tools and those found now, in words. */
function differences(recorded: NodeTools, now: NodeTools): string[] {
  const out: string[] = [];
  // A tool the guest did not have (e.g. jq, installed by the student later)
  // could not have been part of a passing check: only new copies of tools
  // that existed can shadow them.
  const known = new Set(Object.keys(recorded.files).map(baseName));
  for (const file of new Set([...Object.keys(recorded.files), ...Object.keys(now.files)])) {
    const before = recorded.files[file];
    const after = now.files[file];
    if (before === after) continue;
    if (before === undefined && !known.has(baseName(file))) continue;
    if (before === undefined) out.push(`${file} was added`);
    else if (after === undefined) out.push(`${file} was removed`);
    else out.push(`${file} was replaced`);
  }
  return out;
}

/**
 * Takes every node's inventory again (with the recorded PATH) and compares.
 * Returns the student-facing problems; empty when the tools are as recorded.
 */
export async function verifyTools(ctx: InventoryContext, recorded: EnvTools): Promise<string[]> {
  const problems = await Promise.all(
    ctx.nodes.map(async (node) => {
      const expected = recorded[node.node];
      if (!expected) return [`${node.node}: no record of its tools`];
      // In full: by now the student has root, and stat data can be forged.
      const taken = await inventory(ctx, node, {
        path: expected.path,
        timeoutMs: INVENTORY_TIMEOUT_SECONDS * 1000,
      });
      if (!taken.ok) return [`${node.node}: ${taken.reason}`];
      return differences(expected, taken.tools).map((d) => `${node.node}: ${d}`);
    }),
  );
  return problems.flat();
}

/** The PATH checks run with: the control plane's recorded one (all nodes boot one image). */
export function checkPath(recorded: EnvTools, nodes: EnvNode[]): string | undefined {
  for (const node of nodes) {
    const tools = recorded[node.node];
    if (tools) return tools.path;
  }
  return undefined;
}

/** The one outcome a refused check shows, saying what changed and what to do. */
export function toolsChangedOutcome(problems: string[]): CheckOutcome {
  const shown = problems.slice(0, 10);
  if (problems.length > shown.length) shown.push(`and ${problems.length - shown.length} more`);
  return {
    name: 'lab-tools',
    description: "the lab's tools are as labvirt set them up",
    passed: false,
    points: 0,
    messages: [
      `the lab's tools were changed: ${shown.join('; ')}. labvirt cannot grade this env until ` +
        'they are restored (or start the lab again).',
    ],
  };
}
