import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { PAGE_CSS } from './style.js';

export interface Asset {
  type: string;
  body: string;
}

/**
 * The page scripts' TypeScript sources. Both src/web/ and the compiled
 * dist/web/ sit two levels below the package root, so this finds them from
 * either (esbuild compiles TypeScript itself).
 */
const CLIENT_DIR = fileURLToPath(new URL('../../src/web/client/', import.meta.url));
const ENTRIES = ['terminal', 'admin'] as const;

function entryFile(name: string): string {
  const file = `${CLIENT_DIR}${name}.ts`;
  if (!existsSync(file)) throw new Error(`the web page sources are missing: ${file}`);
  return file;
}

/**
 * Bundles the pages' scripts (xterm.js included) with esbuild once, at
 * start-up, from the installed packages: nothing is fetched from a CDN, so
 * a classroom without internet access works, and no build step has to run
 * before `labvirt dev`.
 */
export async function buildAssets(): Promise<Map<string, Asset>> {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: Object.fromEntries(ENTRIES.map((name) => [name, entryFile(name)])),
    bundle: true,
    format: 'esm',
    minify: true,
    target: 'es2022',
    write: false,
    outdir: '/assets',
    logLevel: 'silent',
  });
  const assets = new Map<string, Asset>();
  for (const file of result.outputFiles) {
    const name = file.path.slice(file.path.lastIndexOf('/') + 1);
    assets.set(name, { type: 'text/javascript; charset=utf-8', body: file.text });
  }
  const require = createRequire(import.meta.url);
  const xtermCss = await readFile(require.resolve('@xterm/xterm/css/xterm.css'), 'utf8');
  assets.set('xterm.css', { type: 'text/css; charset=utf-8', body: xtermCss });
  assets.set('page.css', { type: 'text/css; charset=utf-8', body: PAGE_CSS });
  return assets;
}
