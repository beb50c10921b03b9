#!/usr/bin/env node
// The CLI is compiled to dist/ by `npm ci` (the "prepare" script). When dist/
// is missing, or older than any source file (a checkout edited since the last
// build), run the sources through tsx instead, so nobody runs stale code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli', 'main.js');

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const src = join(root, 'src');
const useBuild =
  existsSync(built) &&
  !process.env.LABVIRT_FROM_SOURCE &&
  (!existsSync(src) || newestSource(src) <= statSync(built).mtimeMs);
if (useBuild) {
  const { main } = await import(built);
  await main(process.argv);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import(join(root, 'src', 'cli', 'main.ts'));
  await main(process.argv);
}
