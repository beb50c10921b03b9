import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { kubectl as runKubectl } from '../helpers/kubectl.js';

const LABVIRT = join(import.meta.dirname, '..', '..', 'bin', 'labvirt.js');

/** Runs the real `labvirt` CLI; `headBytes` closes its stdout after that much, as `| head -c` does. */
function labvirt(
  args: string[],
  headBytes?: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [LABVIRT, ...args], {
      env: { ...process.env, LABVIRT_CONFIG: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (headBytes !== undefined && stdout.length >= headBytes) child.stdout.destroy();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * The documented way to have a cluster judge a rendered env (docs/environments.md):
 * create its namespace, then a server dry run of the whole output. And the CLI
 * ends quietly when its reader goes away.
 */
describe('labvirt render with kubectl, and a closed stdout', () => {
  let sim: SimHandle;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-render-example-'));
    sim = await startSim({ dir, speed: 200, guests: false });
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the documented server dry run validates a rendered env and stores nothing', async () => {
    const rendered = await labvirt(['render', '--flavor', 'v1.30-3node', '--env', 'demo']);
    expect(rendered.code).toBe(0);
    const envYaml = join(dir, 'env.yaml');
    writeFileSync(envYaml, rendered.stdout);
    const k = (args: string[]) =>
      runKubectl(sim.kubeconfigPath, args, { cacheDir: join(dir, 'kc') });

    // Without the namespace a server dry run cannot judge what goes in it, as on a real cluster.
    const early = await k(['apply', '--dry-run=server', '-f', envYaml]);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain('namespaces "lab-demo" not found');

    expect((await k(['create', 'namespace', 'lab-demo'])).code).toBe(0);
    const before = sim.store.resourceVersion;
    const dry = await k(['apply', '--dry-run=server', '-f', envYaml]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(
      'virtualmachine.kubevirt.io/control-plane created (server dry run)',
    );
    expect(dry.stdout).toContain('resourcequota/env-quota created (server dry run)');
    expect(sim.store.resourceVersion).toBe(before);
    expect((await k(['get', 'vm', '-n', 'lab-demo'])).stderr).toContain('No resources found');
  }, 120_000); // the CLI runs its sources through tsx: slow to start on a busy machine

  it('`labvirt render | head` ends quietly when head closes the pipe', async () => {
    const r = await labvirt(['render', '--flavor', 'v1.30-3node'], 10);
    // The output opens with render's note on NetworkPolicy enforcement.
    expect(r.stdout.startsWith('# labvirt')).toBe(true);
    expect(r.stderr).not.toContain('EPIPE');
    // Nothing but the warning that the project has no image lock (docs/host-cluster.md).
    expect(r.stderr).toMatch(/^labvirt: warning: no image lock at [^\n]*\n$/);
    expect(r.code).toBe(0);
  }, 120_000);
});
