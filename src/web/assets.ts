import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
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

/** Where `npm run build` (and the image build) leaves the bundled assets: dist/web/assets/. */
const PREBUILT_DIR = fileURLToPath(new URL('./assets/', import.meta.url));

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/**
 * The pages' assets: bundled now from the sources when they are here (a
 * checkout: `labvirt dev`, tests), else the ones bundled at build time (the
 * container image carries dist/ only).
 */
export async function loadAssets(): Promise<Map<string, Asset>> {
  if (existsSync(`${CLIENT_DIR}terminal.ts`)) return buildAssets();
  if (!existsSync(PREBUILT_DIR)) {
    throw new Error(
      `the web pages' assets are missing: neither ${CLIENT_DIR} nor ${PREBUILT_DIR} (run npm run build)`,
    );
  }
  const assets = new Map<string, Asset>();
  for (const name of await readdir(PREBUILT_DIR)) {
    const type = TYPES[name.slice(name.lastIndexOf('.') + 1)];
    if (type) assets.set(name, { type, body: await readFile(`${PREBUILT_DIR}${name}`, 'utf8') });
  }
  return assets;
}

/** Bundles the assets into `dir` (default dist/web/assets/ beside this module). */
export async function writeAssets(dir = PREBUILT_DIR): Promise<string[]> {
  const assets = await buildAssets();
  await mkdir(dir, { recursive: true });
  for (const [name, asset] of assets) await writeFile(`${dir}/${name}`, asset.body);
  return [...assets.keys()];
}

/**
 * Bundles the pages' scripts (xterm.js included) with esbuild (a development
 * dependency) from the installed packages: nothing is fetched from a CDN, so
 * a classroom without internet access works, and no build step has to run
 * before `labvirt dev`.
 */
async function buildAssets(): Promise<Map<string, Asset>> {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: Object.fromEntries(ENTRIES.map((name) => [name, `${CLIENT_DIR}${name}.ts`])),
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
