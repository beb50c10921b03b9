import type { Executor } from '../ssh/index.js';
import type { EnvNode } from '../pool/nodes.js';
import type { CheckOutcome } from './types.js';

/**
 * Grading integrity: a student with root in their VMs could replace the tools
 * a check relies on (`kubectl`, `bash`, `sudo`, …) or put a fake one earlier
 * on PATH, and so fake a pass. Before the student gets in, labvirt records,
 * per node, the guest's PATH and every copy of these tools in its
 * directories (what each resolves to and its sha256). Before each check it
 * takes the same inventory again and grades only when nothing changed; the
 * checks then run with that recorded PATH, not with one the student set.
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

/**
 * Runs as root with the guest's PATH (at record time) or with the recorded
 * one. Its own helpers are called by absolute path under /usr, so a planted
 * `readlink` or `sha256sum` on PATH does not take part. Directory and tool
 * names arrive as environment data (checked against SAFE_DIR), never as
 * shell text.
 */
const INVENTORY_SCRIPT = `set -uf
printf 'path\\t%s\\n' "$PATH"
# One hash per resolved file: with a merged /usr, /bin/kubectl and
# /usr/bin/kubectl are one 50 MB file. Paths holding | or = are never cached.
seen='|'
hash_of() {
  case "$1" in
    *'|'* | *'='*) h=$(/usr/bin/sha256sum -- "$1" 2>/dev/null) || h= ;;
    *)
      case "$seen" in
        *"|$1="*) h=\${seen#*"|$1="}; h=\${h%%"|"*}; return ;;
      esac
      h=$(/usr/bin/sha256sum -- "$1" 2>/dev/null) || h=
      h=\${h%% *}
      seen="$seen$1=$h|"
      return ;;
  esac
  h=\${h%% *}
}
# Joined first: only an expansion's result is split, so a literal ':' between
# the two would glue PATH's last directory to the first scanned one.
dirs="$PATH:$LABVIRT_SCAN_DIRS"
IFS=:
for d in $dirs; do
  IFS=' '
  for n in $LABVIRT_TOOLS; do
    f="$d/$n"
    [ -e "$f" ] || [ -L "$f" ] || continue
    r=$(/usr/bin/readlink -f -- "$f" 2>/dev/null) || r=
    hash_of "$r"
    printf 'file\\t%s\\t%s\\t%s\\n' "$f" "$r" "$h"
  done
  IFS=:
done
IFS=' '
for f in $LABVIRT_FIXED; do
  r=$(/usr/bin/readlink -f -- "$f" 2>/dev/null) || r=
  hash_of "$r"
  printf 'file\\t%s\\t%s\\t%s\\n' "$f" "$r" "$h"
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

interface InventoryContext {
  executor: Executor;
  envId: string;
  nodes: EnvNode[];
}

type Inventory = { ok: true; tools: NodeTools } | { ok: false; reason: string };

async function inventory(ctx: InventoryContext, node: EnvNode, path?: string): Promise<Inventory> {
  const result = await ctx.executor.exec(
    { envId: ctx.envId, node: node.node, ip: node.ip },
    INVENTORY_SCRIPT,
    {
      env: {
        ...(path ? { PATH: path } : {}),
        LABVIRT_TOOLS: CHECKED_TOOLS.join(' '),
        LABVIRT_SCAN_DIRS: ALWAYS_SCANNED.join(':'),
        LABVIRT_FIXED: FIXED_PATHS.join(' '),
      },
      timeoutMs: 60_000,
      runAs: 'root',
    },
  );
  const lines = result.stdout.split('\n');
  if (result.timedOut || result.exitCode !== 0 || !lines.includes(DONE)) {
    return { ok: false, reason: 'the shell labvirt runs checks with does not behave as set up' };
  }
  let recordedPath = '';
  const files: Record<string, string> = {};
  for (const line of lines) {
    const [kind, ...rest] = line.split('\t');
    if (kind === 'path') recordedPath = rest.join('\t');
    if (kind === 'file' && rest.length === 3) {
      const [file, resolved, sum] = rest as [string, string, string];
      files[file] = `${resolved} ${sum}`;
    }
  }
  return { ok: true, tools: { path: recordedPath, files } };
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

/**
 * Records every node's tools (before the student gets in). Throws when a
 * node's inventory cannot be taken: such an env cannot be graded safely.
 */
export async function recordTools(ctx: InventoryContext): Promise<EnvTools> {
  const entries = await Promise.all(
    ctx.nodes.map(async (node) => {
      let taken = await inventory(ctx, node);
      // Taken again with the PATH checks will get when the guest's had odd entries,
      // so the record and later inventories scan the same directories.
      if (taken.ok && safePath(taken.tools.path) !== taken.tools.path) {
        taken = await inventory(ctx, node, safePath(taken.tools.path));
      }
      if (!taken.ok) throw new ToolsUnverifiableError(`${node.node}: ${taken.reason}`);
      return [node.node, taken.tools] as const;
    }),
  );
  return Object.fromEntries(entries);
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
      const taken = await inventory(ctx, node, expected.path);
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
