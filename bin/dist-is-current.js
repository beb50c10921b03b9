// Whether dist/ was built from the sources as they are: bin/labvirt.js runs
// dist/ only then (else the sources through tsx, so nobody runs stale code),
// and the benches and the image test ask the same question.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * True when `<root>/dist/cli/main.js` exists and no `.ts` file under
 * `<root>/src` (nor any of `alsoInputs`, paths under root) is newer. An
 * install without src/ (the container image) counts as current.
 */
export function distIsCurrent(root, alsoInputs = []) {
  const built = join(root, 'dist', 'cli', 'main.js');
  if (!existsSync(built)) return false;
  const src = join(root, 'src');
  const inputs = Math.max(
    existsSync(src) ? newestSource(src) : 0,
    ...alsoInputs.map((f) => statSync(join(root, f)).mtimeMs),
  );
  return inputs <= statSync(built).mtimeMs;
}
