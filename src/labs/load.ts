import { constants } from 'node:fs';
import { access, readFile, readdir, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { flavorName } from '../config/index.js';
import { describeIssue, problem } from './problems.js';
import { labSchema, type CheckEntry, type LabFile, type StepEntry } from './schema.js';
import type {
  Lab,
  LabCheck,
  LabProblem,
  LabScript,
  LabScriptSet,
  LoadLabsOptions,
} from './types.js';

const WORKER_SELECTORS = new Set(['worker-1', 'worker-2', 'all-workers']);
const SHEBANG = /^#!(\/usr)?\/bin\/bash\b|^#!\/usr\/bin\/env bash\b/;

/** Loads every lab folder under `dir`; a lab with any problem is left out of `labs`. */
export async function loadLabs(
  dir: string,
  options: LoadLabsOptions,
): Promise<{ labs: Lab[]; problems: LabProblem[] }> {
  const root = resolve(dir);
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    return {
      labs: [],
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
    return { labs: result.lab ? [result.lab] : [], problems: result.problems };
  }
  const folders = entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const labs: Lab[] = [];
  const problems: LabProblem[] = [];
  const seen = new Map<string, string>();
  for (const folder of folders) {
    const result = await loadLab(join(root, folder), options);
    problems.push(...result.problems);
    const id = result.id;
    if (id !== undefined) {
      const first = seen.get(id);
      if (first !== undefined) {
        problems.push(
          problem(
            `${folder}/lab.yaml`,
            'id',
            `duplicate lab id \`${id}\`, already used by ${first}/lab.yaml`,
            `give each lab a unique id equal to its folder name ("${folder}")`,
          ),
        );
        continue;
      }
      seen.set(id, folder);
    }
    if (result.lab) labs.push(result.lab);
  }
  return { labs, problems };
}

/**
 * Loads one lab folder. Problem paths are relative to the folder's parent
 * (the labs dir). `id` is reported even when the lab has problems, so
 * duplicates can still be spotted.
 */
export async function loadLab(
  folder: string,
  options: LoadLabsOptions,
): Promise<{ lab?: Lab; id?: string; problems: LabProblem[] }> {
  const dir = resolve(folder);
  const name = basename(dir);
  const yamlFile = `${name}/lab.yaml`;
  let text: string;
  try {
    text = await readFile(join(dir, 'lab.yaml'), 'utf8');
  } catch {
    return {
      problems: [
        problem(
          yamlFile,
          '',
          'the lab folder has no lab.yaml',
          `add ${name}/lab.yaml, or move the folder out of the labs dir`,
        ),
      ],
    };
  }
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
          'start from the annotated example in the lab authoring guide',
        ),
      ],
    };
  }
  const rawId = (raw as { id?: unknown }).id;
  const id = typeof rawId === 'string' ? rawId : undefined;
  const parsed = labSchema.safeParse(raw);
  if (!parsed.success) {
    return {
      id,
      problems: dropEchoes(parsed.error.issues.flatMap((i) => describeIssue(yamlFile, i, raw))),
    };
  }
  const spec = parsed.data;
  const problems: LabProblem[] = [];
  if (spec.id !== name) {
    problems.push(
      problem(
        yamlFile,
        'id',
        `id \`${spec.id}\` does not match the folder name \`${name}\``,
        `set id: ${name} or rename the folder to ${spec.id}`,
      ),
    );
  }
  const flavor = flavorName(spec.flavor.kubernetes, spec.flavor.nodes);
  if (!options.flavors.includes(flavor)) {
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
  if (maxMinutes !== undefined && spec.timeLimitMinutes > maxMinutes) {
    problems.push(
      problem(
        yamlFile,
        'timeLimitMinutes',
        `time limit of ${spec.timeLimitMinutes} minutes is longer than sessions may last (sessions.maxMinutes: ${maxMinutes}): students would be cut off early`,
        `use at most ${maxMinutes} minutes, or raise sessions.maxMinutes in the configuration`,
      ),
    );
  }
  if (spec.sim) problems.push(...simChecksMatch(yamlFile, spec.checks, spec.sim.checks));
  const ctx: ScriptContext = { dir, name, yamlFile, nodes: spec.flavor.nodes, problems };
  const scripts = await readScriptSet(ctx, '', spec);
  const sim = spec.sim ? await readScriptSet(ctx, 'sim.', spec.sim) : undefined;
  if (problems.length > 0 || !scripts) return { id, problems };
  const lab: Lab = {
    id: spec.id,
    title: spec.title,
    description: spec.description,
    difficulty: spec.difficulty,
    flavor,
    kubernetes: spec.flavor.kubernetes,
    nodes: spec.flavor.nodes,
    timeLimitMinutes: spec.timeLimitMinutes,
    hints: spec.hints,
    tags: spec.tags,
    setup: scripts.setup ?? [],
    prepare: scripts.prepare ?? [],
    checks: scripts.checks ?? [],
    solve: scripts.solve ?? [],
    totalPoints: spec.checks.reduce((sum, c) => sum + c.points, 0),
    dir,
    ...(sim
      ? {
          sim: {
            setup: sim.setup ?? [],
            prepare: sim.prepare ?? [],
            checks: sim.checks ?? [],
            solve: sim.solve ?? [],
          },
        }
      : {}),
  };
  return { lab, id, problems };
}

interface ScriptContext {
  dir: string;
  name: string;
  yamlFile: string;
  nodes: 1 | 3;
  problems: LabProblem[];
}

type Sections = Pick<LabFile, 'setup' | 'prepare' | 'checks' | 'solve'>;

async function readScriptSet(
  ctx: ScriptContext,
  prefix: string,
  spec: Partial<Sections>,
): Promise<Partial<LabScriptSet> | undefined> {
  const out: Partial<LabScriptSet> = {};
  for (const section of ['setup', 'prepare', 'solve'] as const) {
    const steps = spec[section];
    if (steps) out[section] = await readSteps(ctx, `${prefix}${section}`, steps);
  }
  if (spec.checks) {
    const names = new Set<string>();
    const checks: LabCheck[] = [];
    for (const [i, c] of spec.checks.entries()) {
      if (names.has(c.name)) {
        ctx.problems.push(
          problem(
            ctx.yamlFile,
            `${prefix}checks.${i}.name`,
            `duplicate check name \`${c.name}\``,
            'give every check its own name; students see it in their results',
          ),
        );
      }
      names.add(c.name);
      const script = await readStep(ctx, `${prefix}checks.${i}`, c);
      if (script)
        checks.push({ ...script, name: c.name, description: c.description, points: c.points });
    }
    out.checks = checks;
  }
  return out;
}

async function readSteps(
  ctx: ScriptContext,
  field: string,
  steps: StepEntry[],
): Promise<LabScript[]> {
  const out: LabScript[] = [];
  for (const [i, step] of steps.entries()) {
    const script = await readStep(ctx, `${field}.${i}`, step);
    if (script) out.push(script);
  }
  return out;
}

async function readStep(
  ctx: ScriptContext,
  field: string,
  step: StepEntry | CheckEntry,
): Promise<LabScript | undefined> {
  const { problems, yamlFile, name } = ctx;
  if (ctx.nodes === 1 && WORKER_SELECTORS.has(step.node)) {
    problems.push(
      problem(
        yamlFile,
        `${field}.node`,
        `node \`${step.node}\` does not exist in a 1-node flavor (only control-plane)`,
        'use node: control-plane (or all), or set flavor.nodes: 3',
      ),
    );
  }
  const rel = normalize(step.script);
  if (isAbsolute(step.script) || rel.startsWith('..') || rel.includes(`..${sep}`)) {
    problems.push(
      problem(
        yamlFile,
        `${field}.script`,
        `script \`${step.script}\` is outside the lab folder`,
        `put the script in ${name}/ and give its path relative to it`,
      ),
    );
    return undefined;
  }
  const path = join(ctx.dir, rel);
  const file = `${name}/${rel}`;
  let content: string;
  try {
    if (!(await stat(path)).isFile()) throw new Error('not a file');
    content = await readFile(path, 'utf8');
  } catch {
    problems.push(
      problem(
        yamlFile,
        `${field}.script`,
        `script file \`${file}\` does not exist`,
        `create ${file}, or fix the file name in lab.yaml`,
      ),
    );
    return undefined;
  }
  let bad = false;
  try {
    await access(path, constants.X_OK);
  } catch {
    problems.push(
      problem(
        file,
        `${field}.script`,
        `script \`${file}\` is not executable`,
        `run: chmod +x ${file}`,
      ),
    );
    bad = true;
  }
  if (!SHEBANG.test(content)) {
    problems.push(
      problem(
        file,
        `${field}.script`,
        `script \`${file}\` does not start with a bash shebang`,
        'make its first line `#!/bin/bash` (then `set -euo pipefail`)',
      ),
    );
    bad = true;
  }
  if (bad) return undefined;
  return { file, node: step.node, user: step.user, timeoutSeconds: step.timeoutSeconds, content };
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
