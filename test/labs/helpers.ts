import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab, LabScript, NodeSelector } from '../../src/labs/index.js';

export const SHIPPED_LABS = join(import.meta.dirname, '..', '..', 'labs');
export const FIXTURES = join(import.meta.dirname, 'fixtures');

export interface RunResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** Which guest sandboxes a selector means for a lab of `nodes` nodes. */
export function nodesFor(selector: NodeSelector, nodes: 1 | 3): string[] {
  const all = nodes === 1 ? ['control-plane'] : ['control-plane', 'worker-1', 'worker-2'];
  if (selector === 'all') return all;
  if (selector === 'all-workers') return all.filter((n) => n !== 'control-plane');
  return [selector];
}

/**
 * Runs one script the way a sim guest does: a real shell, the guest's
 * sandbox as LABVIRT_GUEST_ROOT, HOME inside it, cwd HOME.
 */
export function runInSandbox(script: LabScript, sandbox: string): Promise<RunResult> {
  const home = join(sandbox, 'home', script.user === 'root' ? 'root' : script.user);
  mkdirSync(home, { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/bash', ['-c', script.content], {
      cwd: home,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LABVIRT_GUEST_ROOT: sandbox, HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (exitCode) => resolve({ exitCode, stdout, stderr }));
  });
}

/** Runs a list of steps on every node each names; throws on the first failure. */
export async function runSteps(lab: Lab, steps: LabScript[], root: string): Promise<void> {
  for (const step of steps) {
    for (const node of nodesFor(step.node, lab.nodes)) {
      const r = await runInSandbox(step, join(root, node));
      if (r.exitCode !== 0) {
        throw new Error(`${step.file} on ${node} exited ${r.exitCode}: ${r.stdout}${r.stderr}`);
      }
    }
  }
}
