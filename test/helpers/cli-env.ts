import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { FIXTURE_LABS } from './paths.js';

/**
 * The environment for a child `bin/labvirt.js` (serve, dev, render…): the
 * compiled CLI in dist/ when it is at least as new as every source file, the
 * sources through tsx otherwise (bin/labvirt.js decides, so a test never runs
 * stale code). Compiled, a child loads its modules in about half the CPU time
 * (importing the app: 2.7–3.0 s of CPU from dist/, 4.9–6.8 s through tsx on
 * the shared 2-core machine), which a test that starts several children pays
 * each time. `npm ci` builds dist/ (the "prepare" script), so CI runs it.
 */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, LABVIRT_FROM_SOURCE: '', ...extra };
}

/** `bin/labvirt.js` of this checkout. */
const LABVIRT_BIN = join(import.meta.dirname, '..', '..', 'bin', 'labvirt.js');

/**
 * `labvirt <args>` as a child process, with {@link cliEnv} (plus `env`), its
 * stdout and stderr both handed to `onOutput` as text.
 */
export function spawnLabvirt(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; detached?: boolean; onOutput?: (text: string) => void } = {},
): ChildProcess {
  const child = spawn(process.execPath, [LABVIRT_BIN, ...args], {
    env: cliEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  const onOutput = options.onOutput;
  if (onOutput) {
    child.stdout?.on('data', (d: Buffer) => onOutput(d.toString()));
    child.stderr?.on('data', (d: Buffer) => onOutput(d.toString()));
  }
  return child;
}

/** `labvirt dev` on free ports at simulator speed 200, with its config file and directory. */
export function devArgs(configFile: string, dir: string): string[] {
  return [
    'dev',
    '--config',
    configFile,
    '--dir',
    dir,
    '--api-port',
    '0',
    '--ssh-port',
    '0',
    '--speed',
    '200',
  ];
}

/**
 * A config for `labvirt dev` on the fixture labs: one 1-node env warm (at
 * most `oneNodeMax`), the 3-node flavor they also name with none warm, plus `extra`.
 */
export function fixtureDevConfig(
  oneNodeMax: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    labsDir: FIXTURE_LABS,
    flavors: {
      'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: oneNodeMax },
      'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
    },
    ...extra,
  };
}
