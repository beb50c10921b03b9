/**
 * The line (1-based) of a top-level `exit` / `exit 0` that comes before the
 * script's last command: everything after it is dead, so a check with one
 * passes without any fix. Top-level means at column 0, which is how an
 * unconditional exit looks in a script formatted like the shipped labs.
 */
export function earlyExitLine(content: string): number | undefined {
  const lines = content.split('\n');
  const last = lines.findLastIndex((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  const early = lines.findIndex((l, i) => i < last && /^exit(\s+0)?\s*(;|#|$)/.test(l));
  return early >= 0 ? early + 1 : undefined;
}
