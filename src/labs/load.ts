import { constants } from 'node:fs';
import { access, readdir } from 'node:fs/promises';
import { basename, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { flavorName } from '../config/index.js';
import { earlyExitLine } from './checktext.js';
import { readLabFile, refusalText } from './files.js';
import { describeIssue, problem } from './problems.js';
import type { z } from 'zod';
import {
  checkSchema,
  labSchema,
  stepSchema,
  wrongFixSchema,
  type CheckEntry,
  type StepEntry,
  type WrongFixEntry,
} from './schema.js';
import type {
  Lab,
  LabProblem,
  LabScript,
  LabScriptFile,
  LabScriptSet,
  LoadLabsOptions,
} from './types.js';

const WORKER_SELECTORS = new Set(['worker-1', 'worker-2', 'all-workers']);
const SHEBANG = /^#!(\/usr)?\/bin\/bash\b|^#!\/usr\/bin\/env bash\b/;

/** Loads every lab folder under `dir`; a lab with any problem is left out of `labs`. */
export async function loadLabs(
  dir: string,
  options: LoadLabsOptions,
): Promise<{ labs: Lab[]; problems: LabProblem[]; files: LabScriptFile[] }> {
  const root = resolve(dir);
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    return {
      labs: [],
      files: [],
      problems: [
        problem(
          dir,
          '',
          `cannot read the labs folder (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
          'check `labsDir` in the configuration or pass the folder to the command',
        ),
      ],
    };
  }
  if (entries.some((e) => e.isFile() && e.name === 'lab.yaml')) {
    // `dir` is one lab's folder (`labvirt labs validate labs/coredns-broken`),
    // not a folder of labs: its sub-folders (sim/) are the lab's own.
    const result = await loadLab(root, options);
    return {
      labs: result.lab ? [result.lab] : [],
      problems: result.problems,
      files: result.files ?? [],
    };
  }
  const folders = entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const labs: Lab[] = [];
  const problems: LabProblem[] = [];
  const files: LabScriptFile[] = [];
  const seen = new Map<string, string>();
  for (const folder of folders) {
    const result = await loadLab(join(root, folder), options);
    problems.push(...result.problems);
    files.push(...(result.files ?? []));
    const id = result.id;
    if (id !== undefined) {
      const first = seen.get(id);
      if (first !== undefined) {
        problems.push(
          problem(
            shownPath(join(root, folder, 'lab.yaml')),
            'id',
            `duplicate lab id \`${id}\`, already used by ${shownPath(join(root, first, 'lab.yaml'))}`,
            `give each lab a unique id equal to its folder name ("${folder}")`,
          ),
        );
        continue;
      }
      seen.set(id, folder);
    }
    if (result.lab) labs.push(result.lab);
  }
  return { labs, problems, files };
}

/**
 * How a path is shown in problems and fixes: relative to the current
 * directory when it is below it (so `chmod +x labs/x/setup.sh` works where
 * the command ran), absolute otherwise.
 */
export function shownPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

/**
 * Loads one lab folder. Problem paths are as seen from the current directory
 * (see `shownPath`). `id` is reported even when the lab has problems, so
 * duplicates can still be spotted.
 */
export async function loadLab(
  folder: string,
  options: LoadLabsOptions,
): Promise<{ lab?: Lab; id?: string; problems: LabProblem[]; files?: LabScriptFile[] }> {
  const dir = resolve(folder);
  const name = basename(dir);
  const yamlFile = shownPath(join(dir, 'lab.yaml'));
  const read = await readLabFile(dir, 'lab.yaml');
  if ('refused' in read && read.refused !== 'missing') {
    const { message, suggestion } = refusalText(read.refused, yamlFile);
    return { problems: [problem(yamlFile, '', message, suggestion)] };
  }
  if (!('content' in read)) {
    return {
      problems: [
        problem(
          yamlFile,
          '',
          'the lab folder has no lab.yaml',
          `add ${yamlFile} (\`labvirt labs new ${name} --flavor <flavor>\` writes one), or move the folder out of the labs dir`,
        ),
      ],
    };
  }
  const text = read.content;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const syntax = doc.errors[0];
  if (syntax) {
    // Only the first error: the ones after it are usually its echoes.
    const { line, col } = lineCounter.linePos(syntax.pos[0]);
    const what = syntax.message.split('\n')[0] ?? syntax.code;
    return {
      problems: [
        problem(
          yamlFile,
          '',
          `YAML syntax error at line ${line}, column ${col}: ${what}`,
          `fix the YAML at line ${line} (check indentation, colons, quotes and brackets)`,
        ),
      ],
    };
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return {
      problems: [
        problem(
          yamlFile,
          '',
          'lab.yaml must be a mapping of fields',
          'start from the annotated example in docs/writing-labs.md, or run `labvirt labs new`',
        ),
      ],
    };
  }
  const rawId = (raw as { id?: unknown }).id;
  const id = typeof rawId === 'string' ? rawId : undefined;
  const parsed = labSchema.safeParse(raw);
  const problems: LabProblem[] = parsed.success
    ? []
    : dropEchoes(parsed.error.issues.flatMap((i) => describeIssue(yamlFile, i, raw)));
  // Every check below runs on whatever part of the file is well formed, so a
  // single run lists every problem (not the shape first, then the files).
  const spec = parsed.success ? parsed.data : salvage(raw as Record<string, unknown>);
  if (spec.id !== undefined && spec.id !== name) {
    problems.push(
      problem(
        yamlFile,
        'id',
        `id \`${spec.id}\` does not match the folder name \`${name}\``,
        `set id: ${name} or rename the folder to ${spec.id}`,
      ),
    );
  }
  const flavor = spec.flavor && flavorName(spec.flavor.kubernetes, spec.flavor.nodes);
  if (spec.flavor && flavor && !options.flavors.includes(flavor)) {
    problems.push(
      problem(
        yamlFile,
        'flavor',
        `unknown flavor \`${flavor}\` (kubernetes ${spec.flavor.kubernetes}, ${spec.flavor.nodes} node${spec.flavor.nodes === 1 ? '' : 's'})`,
        `use one of the configured flavors (${options.flavors.join(', ') || 'none configured'}) or add ${flavor} to \`flavors\` in the configuration`,
      ),
    );
  }
  const maxMinutes = options.maxSessionMinutes;
  if (
    maxMinutes !== undefined &&
    spec.timeLimitMinutes !== undefined &&
    spec.timeLimitMinutes > maxMinutes
  ) {
    problems.push(
      problem(
        yamlFile,
        'timeLimitMinutes',
        `time limit of ${spec.timeLimitMinutes} minutes is longer than sessions may last (sessions.maxMinutes: ${maxMinutes}): students would be cut off early`,
        `use at most ${maxMinutes} minutes, or raise sessions.maxMinutes in the configuration`,
      ),
    );
  }
  const realChecks = spec.checks?.filter((c) => c !== undefined);
  const simChecks = spec.sim?.checks?.filter((c) => c !== undefined);
  // Compared only when both lists are whole: a malformed entry is reported
  // above and would show here again as a "missing" twin.
  if (
    realChecks?.length === spec.checks?.length &&
    simChecks?.length === spec.sim?.checks?.length &&
    realChecks &&
    simChecks
  ) {
    problems.push(...simChecksMatch(yamlFile, realChecks, simChecks));
  }
  const ctx: ScriptContext = {
    dir,
    name,
    yamlFile,
    nodes: spec.flavor?.nodes,
    problems,
    raw: raw as Record<string, unknown>,
    files: [],
  };
  const scripts = await readScriptSet(ctx, '', spec);
  const sim = spec.sim ? await readScriptSet(ctx, 'sim.', spec.sim) : undefined;
  const files = ctx.files;
  if (problems.length > 0 || !parsed.success || !flavor) return { id, problems, files };
  const full = parsed.data;
  const lab: Lab = {
    id: full.id,
    title: full.title,
    description: full.description,
    difficulty: full.difficulty,
    flavor,
    kubernetes: full.flavor.kubernetes,
    nodes: full.flavor.nodes,
    timeLimitMinutes: full.timeLimitMinutes,
    hints: full.hints,
    tags: full.tags,
    setup: scripts.setup ?? [],
    prepare: scripts.prepare ?? [],
    checks: scripts.checks ?? [],
    solve: scripts.solve ?? [],
    wrongFixes: scripts.wrongFixes ?? [],
    totalPoints: full.checks.reduce((sum, c) => sum + c.points, 0),
    dir,
    ...(sim
      ? {
          sim: {
            setup: sim.setup ?? [],
            prepare: sim.prepare ?? [],
            checks: sim.checks ?? [],
            solve: sim.solve ?? [],
            wrongFixes: sim.wrongFixes ?? [],
          },
        }
      : {}),
  };
  return { lab, id, problems, files };
}

/** The parts of lab.yaml that the cross-field and file checks need. */
interface LabParts extends Partial<Sections> {
  id?: string;
  flavor?: { kubernetes: string; nodes: 1 | 3 };
  timeLimitMinutes?: number;
  sim?: Partial<Sections>;
}

/**
 * The well-formed parts of a lab.yaml that failed the schema: each field and
 * each list entry on its own, so one bad entry does not hide the others'
 * problems. Entries keep their index (problems name `checks.3`, not `checks.2`).
 */
function salvage(raw: Record<string, unknown>): LabParts {
  const shape = labSchema.shape;
  const pick = <T>(schema: z.ZodType<T>, value: unknown): T | undefined => {
    const r = schema.safeParse(value);
    return r.success ? r.data : undefined;
  };
  const sections = (from: Record<string, unknown>): Partial<Sections> => {
    const out: Partial<Sections> = {};
    for (const section of STEP_SECTIONS) {
      const list = from[section];
      if (Array.isArray(list)) out[section] = list.map((e) => pick(stepSchema, e));
    }
    if (Array.isArray(from.checks)) out.checks = from.checks.map((e) => pick(checkSchema, e));
    if (Array.isArray(from.wrongFixes)) {
      out.wrongFixes = from.wrongFixes.map((e) => pick(wrongFixSchema, e));
    }
    return out;
  };
  const sim = raw.sim;
  return {
    id: typeof raw.id === 'string' ? raw.id : undefined,
    flavor: pick(shape.flavor, raw.flavor),
    timeLimitMinutes: pick(shape.timeLimitMinutes, raw.timeLimitMinutes),
    ...sections(raw),
    sim:
      sim !== null && typeof sim === 'object' && !Array.isArray(sim)
        ? sections(sim as Record<string, unknown>)
        : undefined,
  };
}

interface ScriptContext {
  dir: string;
  name: string;
  yamlFile: string;
  /** Unknown when the flavor itself is malformed: node names are then not checked. */
  nodes: 1 | 3 | undefined;
  problems: LabProblem[];
  raw: Record<string, unknown>;
  /** Every script file read, for the linters of `labvirt labs validate`. */
  files: LabScriptFile[];
}

const STEP_SECTIONS = ['setup', 'prepare', 'solve'] as const;

/** Lists of entries; an entry that failed the schema is `undefined` and keeps its place. */
interface Sections {
  setup: (StepEntry | undefined)[];
  prepare: (StepEntry | undefined)[];
  solve: (StepEntry | undefined)[];
  checks: (CheckEntry | undefined)[];
  wrongFixes: (WrongFixEntry | undefined)[];
}

async function readScriptSet(
  ctx: ScriptContext,
  prefix: string,
  spec: Partial<Sections>,
): Promise<Partial<LabScriptSet>> {
  const out: Partial<LabScriptSet> = {};
  for (const section of STEP_SECTIONS) {
    const steps = spec[section];
    if (steps) out[section] = await readSteps(ctx, `${prefix}${section}`, steps);
  }
  if (spec.checks) {
    out.checks = await readNamed(ctx, `${prefix}checks`, spec.checks, 'check', (c, script) => ({
      ...script,
      name: c.name,
      description: c.description,
      points: c.points,
    }));
  }
  if (spec.wrongFixes) {
    out.wrongFixes = await readNamed(
      ctx,
      `${prefix}wrongFixes`,
      spec.wrongFixes,
      'wrong fix',
      (w, script) => ({ ...script, name: w.name, description: w.description }),
    );
  }
  return out;
}

/** Checks and wrong fixes: scripts with a name that must be unique in their list. */
async function readNamed<E extends StepEntry & { name: string }, T>(
  ctx: ScriptContext,
  field: string,
  entries: (E | undefined)[],
  what: string,
  build: (entry: E, script: LabScript) => T,
): Promise<T[]> {
  const names = new Set<string>();
  const out: T[] = [];
  for (const [i, entry] of entries.entries()) {
    if (!entry) {
      await readRawScript(ctx, `${field}.${i}`);
      continue;
    }
    if (names.has(entry.name)) {
      ctx.problems.push(
        problem(
          ctx.yamlFile,
          `${field}.${i}.name`,
          `duplicate ${what} name \`${entry.name}\``,
          what === 'check'
            ? 'give every check its own name; students see it in their results'
            : `give every ${what} its own name; \`labvirt labs test\` reports it by name`,
        ),
      );
    }
    names.add(entry.name);
    const script = await readStep(ctx, `${field}.${i}`, entry);
    if (what === 'check') checkEarlyExit(ctx, entry);
    if (script) out.push(build(entry, script));
  }
  return out;
}

async function readSteps(
  ctx: ScriptContext,
  field: string,
  steps: (StepEntry | undefined)[],
): Promise<LabScript[]> {
  const out: LabScript[] = [];
  for (const [i, step] of steps.entries()) {
    const script = step
      ? await readStep(ctx, `${field}.${i}`, step)
      : await readRawScript(ctx, `${field}.${i}`);
    if (script && step) out.push(script);
  }
  return out;
}

/** A check that exits 0 before doing anything passes without a fix. */
function checkEarlyExit(ctx: ScriptContext, entry: StepEntry & { name: string }): void {
  const path = join(ctx.dir, normalize(entry.script));
  const file = ctx.files.find((f) => f.path === path);
  const line = file && earlyExitLine(file.content);
  if (!file || line === undefined) return;
  ctx.problems.push(
    problem(
      `${file.shown}:${line}`,
      '',
      `check \`${entry.name}\` exits 0 at line ${line}, before its last line: what follows never runs, so it passes without a fix`,
      `remove the \`exit\` at line ${line} of ${file.shown}`,
    ),
  );
}

/**
 * An entry the schema refused still names a script: check that file too, so
 * a missing or non-executable script is not reported only on the next run.
 */
async function readRawScript(ctx: ScriptContext, field: string): Promise<undefined> {
  const entry = valueAtPath(ctx.raw, field.split('.'));
  const script = (entry as { script?: unknown } | undefined)?.script;
  if (typeof script === 'string' && script !== '') await readScriptFile(ctx, field, script);
  return undefined;
}

function valueAtPath(raw: unknown, path: string[]): unknown {
  let cur = raw;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

async function readStep(
  ctx: ScriptContext,
  field: string,
  step: StepEntry,
): Promise<LabScript | undefined> {
  if (ctx.nodes === 1 && WORKER_SELECTORS.has(step.node)) {
    ctx.problems.push(
      problem(
        ctx.yamlFile,
        `${field}.node`,
        `node \`${step.node}\` does not exist in a 1-node flavor (only control-plane)`,
        'use node: control-plane (or all), or set flavor.nodes: 3',
      ),
    );
  }
  const read = await readScriptFile(ctx, field, step.script);
  if (!read) return undefined;
  return {
    file: read.file,
    node: step.node,
    user: step.user,
    timeoutSeconds: step.timeoutSeconds,
    content: read.content,
  };
}

/** Reads one script of the lab: inside the folder, a file, executable, bash. */
async function readScriptFile(
  ctx: ScriptContext,
  field: string,
  script: string,
): Promise<{ file: string; content: string } | undefined> {
  const { problems, yamlFile, name } = ctx;
  const rel = normalize(script);
  if (isAbsolute(script) || rel.startsWith('..') || rel.includes(`..${sep}`)) {
    problems.push(
      problem(
        yamlFile,
        `${field}.script`,
        `script \`${script}\` is outside the lab folder`,
        `put the script in ${shownPath(ctx.dir)}/ and give its path relative to it`,
      ),
    );
    return undefined;
  }
  const path = join(ctx.dir, rel);
  const file = `${name}/${rel}`;
  const shown = shownPath(path);
  const read = await readLabFile(ctx.dir, rel);
  if ('refused' in read && read.refused !== 'missing') {
    const { message, suggestion } = refusalText(read.refused, file);
    problems.push(problem(yamlFile, `${field}.script`, `script ${message}`, suggestion));
    return undefined;
  }
  if (!('content' in read)) {
    problems.push(
      problem(
        yamlFile,
        `${field}.script`,
        `script file \`${file}\` does not exist`,
        `create ${shown}, or fix the file name in ${yamlFile}`,
      ),
    );
    return undefined;
  }
  const content = read.content;
  if (!ctx.files.some((f) => f.path === path)) ctx.files.push({ path, shown, content });
  let bad = false;
  try {
    await access(path, constants.X_OK);
  } catch {
    problems.push(
      problem(
        shown,
        `${field}.script`,
        `script \`${file}\` is not executable`,
        `run: chmod +x ${shown}`,
      ),
    );
    bad = true;
  }
  if (!SHEBANG.test(content)) {
    problems.push(
      problem(
        shown,
        `${field}.script`,
        `script \`${file}\` does not start with a bash shebang`,
        'make its first line `#!/bin/bash` (then `set -euo pipefail`)',
      ),
    );
    bad = true;
  }
  if (bad) return undefined;
  return { file, content };
}

/**
 * A lab's sim variant grades the same things as the real one (a lab tested on
 * the simulator must score like the real lab): the same check names, each
 * with the same points.
 */
function simChecksMatch(
  yamlFile: string,
  real: readonly CheckEntry[],
  sim: readonly CheckEntry[],
): LabProblem[] {
  const out: LabProblem[] = [];
  const points = new Map(real.map((c) => [c.name, c.points]));
  sim.forEach((c, i) => {
    const want = points.get(c.name);
    if (want === undefined) {
      out.push(
        problem(
          yamlFile,
          `sim.checks.${i}.name`,
          `sim check \`${c.name}\` has no real check of that name`,
          `name it after one of the real checks (${[...points.keys()].join(', ')})`,
        ),
      );
    } else if (c.points !== want) {
      out.push(
        problem(
          yamlFile,
          `sim.checks.${i}.points`,
          `sim check \`${c.name}\` is worth ${c.points} points, the real one ${want}`,
          `give it points: ${want}`,
        ),
      );
    }
  });
  const simNames = new Set(sim.map((c) => c.name));
  for (const c of real) {
    if (!simNames.has(c.name)) {
      out.push(
        problem(
          yamlFile,
          'sim.checks',
          `the real check \`${c.name}\` has no sim variant`,
          `add a sim check named ${c.name} (points: ${c.points}) that reads the sim's files`,
        ),
      );
    }
  }
  return out;
}

/** A misspelt key also shows up as its correct twin "missing": keep only the typo. */
function dropEchoes(problems: LabProblem[]): LabProblem[] {
  const suggested = new Set(
    problems.flatMap((p) => {
      const m = /^did you mean `([^`]+)`\?$/.exec(p.suggestion);
      return m && p.message.startsWith('unknown field')
        ? [[...p.field.split('.').slice(0, -1), m[1]].join('.')]
        : [];
    }),
  );
  return problems.filter(
    (p) => !(p.message.startsWith('missing required field') && suggested.has(p.field)),
  );
}
