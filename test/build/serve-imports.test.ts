import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { packagesLoaded, ROOT } from '../helpers/loaded-packages.js';

/** The packages a child process loads by importing `modules` (sources through tsx). */
function packagesLoadedBy(modules: string[]): Set<string> {
  const r = packagesLoaded(
    modules
      .map((m) => `await import(${JSON.stringify(pathToFileURL(join(ROOT, m)).href)});`)
      .join('\n'),
  );
  expect(r.status, r.stderr.slice(-2000)).toBe(0);
  return r.packages;
}

describe('what `labvirt serve` loads before it knows its configuration', () => {
  // Issue #12: @slack/bolt and its dependencies are ≈ 15 MiB of RSS; a
  // labvirt without Slack (API and CLI only, or the SSH gateway alone) loads
  // them only if Slack is configured (app/index.ts imports them then).
  it('loads the orchestrator, the gateway and serve without @slack/bolt', () => {
    const packages = packagesLoadedBy([
      'src/cli/commands/serve.ts',
      'src/app/index.ts',
      'src/app/gateway.ts',
      'src/slack/secrets.ts',
    ]);
    // What the orchestrator does need is there: the check sees the module graph.
    expect(packages).toContain('bullmq');
    expect(packages).toContain('@kubernetes/client-node');
    expect(packages).not.toContain('@slack/bolt');
    expect(packages).not.toContain('@slack/web-api');
  }, 120_000);

  it('loads @slack/bolt with the Slack front end (the check can see it)', () => {
    const packages = packagesLoadedBy(['src/slack/start.ts', 'src/slack/notifier.ts']);
    expect(packages).toContain('@slack/bolt');
  }, 120_000);
});
