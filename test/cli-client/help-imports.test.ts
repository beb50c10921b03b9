import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');

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

/** Runs the CLI from source with `args` and returns every package it loaded. */
function packagesLoaded(args: string[]): { status: number | null; packages: Set<string> } {
  const script = `
    import { register as registerTsx } from 'tsx/esm/api';
    import { register } from 'node:module';
    registerTsx();
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}));
    const { main } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'cli', 'main.ts')).href)});
    await main(['node', 'labvirt', ...${JSON.stringify(args)}]);
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
  return { status: r.status, packages };
}

describe('labvirt --help loads only what it prints', () => {
  // Issue #12: `--help` took 20× a bare `node` start when a command module
  // imported the server side (Kubernetes client, config schema, Slack) at the top.
  it('loads commander and none of the server-side packages', () => {
    const { status, packages } = packagesLoaded(['--help']);
    expect(status).toBe(0);
    expect(packages).toContain('commander');
    for (const heavy of [
      '@kubernetes/client-node',
      'kubernetes-models',
      'fastify',
      'bullmq',
      'ioredis',
      'ssh2',
      'zod',
      'ajv',
      '@slack/bolt',
      'yaml',
    ])
      expect(packages, `--help loaded ${heavy}`).not.toContain(heavy);
  });
});
