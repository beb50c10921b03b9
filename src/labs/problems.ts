import type { z } from 'zod';
import { closest } from '../config/suggest.js';
import {
  DIFFICULTIES,
  GUEST_USERS,
  KNOWN_KEYS,
  MAX_TIMEOUT_SECONDS,
  labSchema,
  NODE_SELECTORS,
} from './schema.js';
import type { LabProblem } from './types.js';

/** What a valid value of each field looks like, keyed by the field's own name. */
const EXPECTED: Record<string, string> = {
  id: 'a DNS label equal to the folder name: lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters',
  title: 'a one-line title (at most 120 characters)',
  description: 'Markdown text shown to the student at start',
  difficulty: `one of ${DIFFICULTIES.join(', ')}`,
  flavor: 'a mapping like `{ kubernetes: "1.30", nodes: 3 }`',
  kubernetes: 'a quoted minor version such as "1.30" (unquoted, YAML reads 1.30 as the number 1.3)',
  nodes: '1 or 3',
  timeLimitMinutes: 'whole minutes between 5 and 480',
  hints: 'a list of at least one hint, ordered from gentle to explicit',
  tags: 'a list of short words',
  setup: 'a list of at least one step `{ node, script, user, timeoutSeconds }`',
  prepare: 'a list of steps `{ node, script, user, timeoutSeconds }`',
  solve: 'a list of steps `{ node, script, user, timeoutSeconds }`',
  checks:
    'a list of at least one check `{ name, description, points, node, script, timeoutSeconds }`',
  sim: 'a mapping with setup and checks, and optionally prepare, solve and wrongFixes',
  wrongFixes:
    'a list of shortcuts `{ name, description, node, script, user, timeoutSeconds }` the checks must refuse',
  node: `one of ${NODE_SELECTORS.join(', ')}`,
  user: `one of ${GUEST_USERS.join(', ')} (default root)`,
  script: 'the name of a script file in the lab folder, e.g. setup.sh',
  timeoutSeconds: `whole seconds between 1 and ${MAX_TIMEOUT_SECONDS}`,
  name: 'a short lowercase name such as "dns-resolves" (letters, digits, "-")',
  points: 'a whole number of points from 1 to 100 (a check worth nothing cannot count)',
};

/** Longest piece of an author's value a problem quotes back. */
const EXCERPT_CHARS = 40;

/**
 * A short, single-line excerpt of a value to quote in a problem: a file that
 * is not the lab's (a secret behind a symlink, a binary) must not be printed
 * back in full.
 */
export function excerpt(value: string): string {
  const line = [...value].map((c) => (c < ' ' || c === '\u007f' ? ' ' : c)).join('');
  return line.length > EXCERPT_CHARS ? `${line.slice(0, EXCERPT_CHARS)}…` : line;
}

export function problem(
  file: string,
  field: string,
  message: string,
  suggestion: string,
): LabProblem {
  return { file, field, message, suggestion };
}

/** Turns one zod issue into a problem the lab author can act on. */
export function describeIssue(file: string, issue: z.core.$ZodIssue, raw: unknown): LabProblem[] {
  const path = issue.path.map(String);
  const field = path.join('.');
  const last = [...path].reverse().find((p) => !/^[0-9]+$/.test(p)) ?? '';
  const expected = EXPECTED[last] ?? 'a valid value';
  const value = valueAt(raw, issue.path);

  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const close = closest(key, KNOWN_KEYS);
      return problem(
        file,
        [...path, excerpt(key)].join('.'),
        `unknown field \`${excerpt(key)}\``,
        close ? `did you mean \`${close}\`?` : `remove it; known fields: ${knownAt(path)}`,
      );
    });
  }
  if (value === undefined) {
    return [
      problem(file, field, `missing required field \`${last}\``, `add \`${last}\`: ${expected}`),
    ];
  }
  if (last === 'kubernetes' && typeof value === 'number') {
    return [
      problem(
        file,
        field,
        `kubernetes version must be a string, got the number ${value}`,
        `quote it: kubernetes: "${versionGuess(value)}"`,
      ),
    ];
  }
  if (issue.code === 'invalid_type') {
    return [
      problem(
        file,
        field,
        `\`${last}\` must be ${article(issue.expected)}, got ${typeName(value)}`,
        `use ${expected}`,
      ),
    ];
  }
  if (issue.code === 'too_small' && Array.isArray(value)) {
    return [problem(file, field, `\`${last}\` is empty`, `give ${expected}`)];
  }
  if (issue.code === 'too_small' && typeof value === 'string') {
    return [problem(file, field, `\`${last}\` is empty`, `write ${expected}`)];
  }
  if ((issue.code === 'too_small' || issue.code === 'too_big') && typeof value === 'number') {
    const bound =
      issue.code === 'too_small'
        ? `at least ${String(issue.minimum)}`
        : `at most ${String(issue.maximum)}`;
    return [problem(file, field, `\`${last}\` is ${value}, must be ${bound}`, `use ${expected}`)];
  }
  if (issue.code === 'invalid_value' || issue.code === 'invalid_union') {
    const close =
      typeof value === 'string' && last !== 'nodes' ? closest(value, options(last)) : undefined;
    return [
      problem(
        file,
        field,
        `\`${last}\` is ${excerpt(JSON.stringify(value))}, which is not allowed`,
        close ? `did you mean \`${close}\`? (${expected})` : `use ${expected}`,
      ),
    ];
  }
  if (issue.code === 'invalid_format') {
    return [
      problem(
        file,
        field,
        `\`${last}\` is ${excerpt(JSON.stringify(value))}, which is not well formed`,
        `use ${expected}`,
      ),
    ];
  }
  return [problem(file, field, `\`${last}\` is invalid (${issue.message})`, `use ${expected}`)];
}

function options(field: string): readonly string[] {
  if (field === 'node') return NODE_SELECTORS;
  if (field === 'user') return GUEST_USERS;
  if (field === 'difficulty') return DIFFICULTIES;
  return [];
}

function knownAt(path: string[]): string {
  const last = path.at(-1);
  if (last === 'flavor') return 'kubernetes, nodes';
  if (path.length === 0)
    return `${Object.keys(labSchema.shape).join(', ')} (see docs/writing-labs.md)`;
  return 'node, script, user, timeoutSeconds (and name, description, points for checks)';
}

function versionGuess(n: number): string {
  // 1.3 was almost surely "1.30": YAML dropped the trailing zero.
  const [major, minor = '0'] = String(n).split('.');
  return `${major}.${minor.padEnd(2, '0')}`;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = raw;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function typeName(v: unknown): string {
  if (v === null) return 'nothing (null)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${article(typeof v)} (${JSON.stringify(v)})`;
}

function article(t: string): string {
  const name = t === 'object' ? 'mapping' : t === 'array' ? 'list' : t;
  return /^[aeiou]/.test(name) ? `an ${name}` : `a ${name}`;
}

export { closest };

/** Problems as lines a human can read, one per problem. */
export function formatProblems(problems: readonly LabProblem[]): string {
  return problems
    .map(
      (p) => `${p.file}${p.field ? ` (${p.field})` : ''}: ${p.message}\n    fix: ${p.suggestion}`,
    )
    .join('\n');
}
