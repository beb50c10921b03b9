#!/usr/bin/env node
// `npm run build` (and the image build) run this after tsc: it replaces
// <dist>/kube/client-node.js — tsc's `export * from '@kubernetes/client-node'`
// — with that package bundled into one minified module. Every labvirt
// process loads client-node at start (serve, the simulator, every CLI command
// that reaches a cluster); unbundled, its ≈ 870 files and 24.7 MB of
// generated JavaScript stay in memory as source text and module records,
// about 35 MiB of RSS per process (issue #12, docs/performance.md).
//
// Only client-node's own files go into the bundle: the packages it imports
// stay imports, resolved from node_modules at run time like every other
// dependency (the image's production dependencies are the same ones).
// Usage: node scripts/bundle-client-node.mjs [distDir]   (default: dist)
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const dist = resolve(process.argv[2] ?? 'dist');
const target = join(dist, 'kube', 'client-node.js');
const compiled = readFileSync(target, 'utf8');
// Guards against bundling over some other module, or twice (the bundle is
// not a re-export any more): either would leave a dist/ nobody meant.
// tsc writes the re-export with the source's quotes; esbuild (bench/cli.bench.ts's
// quick transpile) with double quotes.
if (!/^export \* from (['"])@kubernetes\/client-node\1;$/m.test(compiled)) {
  const bundled = compiled.startsWith('// @kubernetes/client-node');
  console.error(
    bundled
      ? `${target} is already the bundle: run tsc first (npm run build does both)`
      : `${target} is not tsc's re-export of @kubernetes/client-node (src/kube/client-node.ts changed?)`,
  );
  process.exit(1);
}

const require = createRequire(import.meta.url);
const entry = require.resolve('@kubernetes/client-node');
const { version } = JSON.parse(readFileSync(join(entry, '..', '..', 'package.json'), 'utf8'));
const result = await build({
  entryPoints: [entry],
  bundle: true,
  // Every package import stays an import (client-node's own dependencies).
  packages: 'external',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  // Class and function names as written: stack traces and error names read
  // as client-node's, not as one letter.
  keepNames: true,
  legalComments: 'eof',
  banner: {
    js: `// @kubernetes/client-node ${version}, bundled by scripts/bundle-client-node.mjs`,
  },
  write: false,
  logLevel: 'warning',
});
const [out] = result.outputFiles;
writeFileSync(target, out.contents);
const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
console.log(
  `@kubernetes/client-node ${version} bundled into ${target} (${kib(statSync(target).size)})`,
);
