#!/usr/bin/env node
// The CLI is compiled to dist/ by `npm ci` (the "prepare" script). When dist/
// is missing, or older than any source file (a checkout edited since the last
// build), run the sources through tsx instead, so nobody runs stale code.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { distIsCurrent } from './dist-is-current.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli', 'main.js');

const useBuild = !process.env.LABVIRT_FROM_SOURCE && distIsCurrent(root);
if (useBuild) {
  const { main } = await import(built);
  await main(process.argv);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import(join(root, 'src', 'cli', 'main.ts'));
  await main(process.argv);
}
