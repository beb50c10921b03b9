#!/usr/bin/env node
// The CLI is compiled to dist/ by `npm ci` (the "prepare" script). When run
// from a checkout whose dist/ is missing, fall back to running the sources
// through tsx so a contributor never sees a stale or absent build.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli', 'main.js');
if (existsSync(built) && !process.env.LABVIRT_FROM_SOURCE) {
  const { main } = await import(built);
  await main(process.argv);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import(join(root, 'src', 'cli', 'main.ts'));
  await main(process.argv);
}
