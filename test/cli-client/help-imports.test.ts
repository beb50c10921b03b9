import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { packagesLoaded as loadedBy, ROOT } from '../helpers/loaded-packages.js';

/** Runs the CLI from source with `args` and returns every package it loaded. */
function packagesLoaded(args: string[]): { status: number | null; packages: Set<string> } {
  const main = pathToFileURL(join(ROOT, 'src', 'cli', 'main.ts')).href;
  return loadedBy(`
    const { main } = await import(${JSON.stringify(main)});
    await main(['node', 'labvirt', ...${JSON.stringify(args)}]);
  `);
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
