import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

/**
 * Module resolution hooks for the child: every module it loads is written to
 * stderr as `loaded <url>`. Registered after tsx, so they see tsx's answer.
 */
const HOOKS = `
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  process.stderr.write('loaded ' + r.url + '\\n');
  return r;
}`;

/**
 * Runs `body` (ES module code) in a child with the sources through tsx and
 * returns every npm package it loaded: what a command or module costs at start.
 */
export function packagesLoaded(body: string): {
  status: number | null;
  stderr: string;
  packages: Set<string>;
} {
  const script = `
    import { register as registerTsx } from 'tsx/esm/api';
    import { register } from 'node:module';
    registerTsx();
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}));
    ${body}
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  const packages = new Set<string>();
  for (const [, url] of r.stderr.matchAll(/^loaded (\S+)$/gm)) {
    const at = url!.lastIndexOf('/node_modules/');
    if (at < 0) continue;
    const [scope, name] = url!.slice(at + '/node_modules/'.length).split('/');
    packages.add(scope!.startsWith('@') ? `${scope}/${name}` : scope!);
  }
  return { status: r.status, stderr: r.stderr, packages };
}
