import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubectl as runKubectl } from '../helpers/kubectl.js';

const LABVIRT = join(import.meta.dirname, '..', '..', 'bin', 'labvirt.js');

/**
 * `labvirt sim` as a user starts it, driven with kubectl through the
 * kubeconfig it prints: what the user sees, not what startSim() does in-process.
 */
describe('labvirt sim from the CLI', () => {
  let dir: string;
  let child: ChildProcess;
  let kubeconfig: string;
  const k = (args: string[]) => runKubectl(kubeconfig, args, { cacheDir: join(dir, 'kc') });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-cli-sim-'));
    child = spawn(
      process.execPath,
      [LABVIRT, 'sim', '--dir', join(dir, 'sim'), '--speed', '50', '--no-guests'],
      { env: { ...process.env, LABVIRT_CONFIG: '' } },
    );
    let output = '';
    kubeconfig = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        output += d.toString();
        const m = /^kubeconfig: (.+)$/m.exec(output);
        if (m) resolve(m[1]!);
      });
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      child.once('exit', (code) => reject(new Error(`labvirt sim exited ${code}: ${output}`)));
    });
  }, 120_000); // the CLI runs its sources through tsx: slow to start on a busy machine
  afterAll(async () => {
    if (child?.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a plain pod to completion, as `labvirt doctor --check-images` needs', async () => {
    const run = await k([
      'run',
      'probe',
      '--image=quay.io/containerdisks/ubuntu:22.04',
      '--restart=Never',
      '--',
      '/bin/true',
    ]);
    expect(run.code, run.stderr).toBe(0);
    let phase = '';
    for (const deadline = Date.now() + 60_000; phase !== 'Succeeded';) {
      if (Date.now() > deadline) throw new Error(`the pod is still "${phase}" after 60 s`);
      await new Promise((r) => setTimeout(r, 200));
      phase = (await k(['get', 'pod', 'probe', '-o', 'jsonpath={.status.phase}'])).stdout;
    }
    const pods = await k(['get', 'pod', 'probe']);
    expect(pods.stdout).toMatch(/probe\s+0\/1\s+Completed\s+0\s/);
  }, 120_000);
});
