import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { problem } from './problems.js';
import type { LabProblem, LabScriptFile } from './types.js';

/** Where `shellcheck` is on PATH, or undefined when it is not installed. */
export function findShellcheck(path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'shellcheck');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

interface Comment {
  file: string;
  line: number;
  column: number;
  level: string;
  code: number;
  message: string;
}

/**
 * Runs shellcheck once over every script (as bash, down to style findings,
 * like the project's own lab tests) and turns each finding into a problem at
 * `file:line`. Files are passed as arguments, never through a shell.
 */
export async function shellcheckProblems(
  shellcheck: string,
  files: readonly LabScriptFile[],
): Promise<LabProblem[]> {
  if (files.length === 0) return [];
  const shown = new Map(files.map((f) => [f.path, f.shown]));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      shellcheck,
      ['--format=json1', '--shell=bash', '--severity=style', ...files.map((f) => f.path)],
      { maxBuffer: 32 * 1024 * 1024 },
      (err, out, errOut) => {
        // Exit 1 means "found something"; anything else is shellcheck failing.
        if (err && (err as { code?: unknown }).code !== 1) {
          reject(new Error(`shellcheck failed: ${errOut.trim() || err.message}`));
        } else resolve(out);
      },
    );
  });
  const { comments } = JSON.parse(stdout) as { comments: Comment[] };
  return comments.map((c) => {
    const file = shown.get(c.file) ?? c.file;
    return problem(
      `${file}:${c.line}`,
      '',
      `shellcheck SC${c.code} (${c.level}) at column ${c.column}: ${c.message}`,
      `fix line ${c.line} of ${file} (https://www.shellcheck.net/wiki/SC${c.code}), or put \`# shellcheck disable=SC${c.code}\` above it with a comment saying why`,
    );
  });
}
