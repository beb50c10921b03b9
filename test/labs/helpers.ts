import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { prepareGuestRoot, sandboxArgs, sandboxSupport } from '../../src/sim/guest/index.js';
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
 * Runs one script the way a sim guest does: a real bash in the guest's
 * sandbox (bubblewrap, the sandbox directory as `/`), HOME and cwd the
 * user's home.
 */
export async function runInSandbox(script: LabScript, sandbox: string): Promise<RunResult> {
  const bwrap = sandboxSupport().bwrap;
  if (!bwrap) throw new Error(`sim lab scripts need bubblewrap: ${sandboxSupport().reason}`);
  const home = script.user === 'root' ? '/root' : `/home/${script.user}`;
  mkdirSync(join(sandbox, home), { recursive: true });
  await prepareGuestRoot(sandbox, basename(sandbox));
  return new Promise((resolve, reject) => {
    const child = spawn(
      bwrap,
      sandboxArgs({ root: sandbox, hostname: basename(sandbox), cwd: home }, [
        '/bin/bash',
        '-c',
        script.content,
      ]),
      {
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: home, USER: script.user },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
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
