import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { Config } from '../config/index.js';
import {
  DEFAULT_LOCK_FILE,
  imagesInUse,
  kubeadmReleases,
  readImageLock,
  type ImageLock,
  type InventoryDirs,
} from '../images/index.js';

/**
 * Where the VM templates and cloud-init files live: `vm-templates/` and
 * `cloud-init/` at the project root (two levels above this file, in src/ and
 * in dist/ alike), unless `LABVIRT_VM_TEMPLATES_DIR` / `LABVIRT_CLOUD_INIT_DIR`
 * point elsewhere (an operator's customised copies).
 */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function vmTemplatesDir(): string {
  return dirFromEnv('LABVIRT_VM_TEMPLATES_DIR') ?? join(PROJECT_ROOT, 'vm-templates');
}

export function cloudInitDir(): string {
  return dirFromEnv('LABVIRT_CLOUD_INIT_DIR') ?? join(PROJECT_ROOT, 'cloud-init');
}

function dirFromEnv(name: string): string | undefined {
  const v = process.env[name];
  if (!v) return undefined;
  return isAbsolute(v) ? v : resolve(process.cwd(), v);
}

// Files are read once per process: rendering runs for every provisioned env.
const cache = new Map<string, string>();

export function readTemplateFile(dir: string, name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new Error(`template file name "${name}" must be a plain file name inside ${dir}`);
  }
  const path = join(dir, name);
  let text = cache.get(path);
  if (text === undefined) {
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`cannot read template ${path}: ${(err as Error).message}`);
    }
    cache.set(path, text);
  }
  return text;
}

/** A YAML template parsed afresh (callers fill it in place). */
export function loadYamlTemplate(dir: string, name: string): Record<string, unknown> {
  const text = readTemplateFile(dir, name);
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`template ${join(dir, name)} is not valid YAML: ${(err as Error).message}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Error(`template ${join(dir, name)} must hold a YAML mapping`);
  }
  return doc as Record<string, unknown>;
}

/** Where the image lock is: `vm.imagesLock`, else vm-templates/images/images.lock.yaml. */
export function imageLockPath(config: Config): string {
  const configured = config.vm.imagesLock;
  if (configured) return isAbsolute(configured) ? configured : resolve(process.cwd(), configured);
  return join(vmTemplatesDir(), DEFAULT_LOCK_FILE);
}

/**
 * The image lock rendering pins with, if there is one. A configured path
 * that does not exist is an error (a typo must not silently unpin); the
 * default path may be absent (no lock made yet).
 */
export function imageLockOf(config: Config): ImageLock | undefined {
  const path = imageLockPath(config);
  const lock = readImageLock(path);
  if (!lock && config.vm.imagesLock) {
    throw new Error(
      `vm.imagesLock: no image lock at ${path} (make one with \`labvirt images lock\`)`,
    );
  }
  return lock;
}

/** Where the image inventory reads what the envs run. */
export function inventoryDirs(): InventoryDirs {
  return { vmTemplates: vmTemplatesDir(), cloudInit: cloudInitDir() };
}

/** How the images the envs use are pinned: by the lock's digests, or by tag. */
export interface ImagePinning {
  /** Where the lock is (or would be). */
  path: string;
  lock?: ImageLock;
  /** How many images the envs and labs of this configuration use. */
  inUse: number;
  /** Those the lock does not hold (all of them without a lock), as labvirt writes them. */
  unpinned: string[];
  /** Flavors' minors without a list in kubeadm-images.yaml: their kubeadm images cannot be locked. */
  unlistedMinors: string[];
}

/**
 * Which images a render of this configuration pins by digest and which it
 * leaves to their tags. Throws like `imageLockOf` (a configured lock that is
 * missing or unreadable).
 */
export function imagePinning(config: Config): ImagePinning {
  const lock = imageLockOf(config);
  const dirs = inventoryDirs();
  const uses = imagesInUse(config, dirs, { skipUnknownMinors: true });
  const listed = kubeadmReleases(dirs);
  const minors = Object.values(config.flavors).map((f) => f.kubernetesVersion);
  return {
    path: imageLockPath(config),
    lock,
    inUse: uses.length,
    unpinned: uses.filter((u) => !lock?.images.has(u.name)).map((u) => u.image),
    unlistedMinors: [...new Set(minors.filter((m) => !listed[m]))].sort(),
  };
}

/**
 * One sentence for operators when images are not all pinned (render, doctor):
 * what happens and how to lock; undefined when every image is pinned.
 */
export function unpinnedImagesNotice(p: ImagePinning): string | undefined {
  if (p.unlistedMinors.length > 0) {
    return `vm-templates/images/kubeadm-images.yaml has no image list for Kubernetes ${p.unlistedMinors.join(', ')}, so kubeadm's images of those flavors cannot be locked and are pulled by tag: paste what \`kubeadm config images list --kubernetes-version v<minor>.<patch>\` prints there, then run \`labvirt images lock\``;
  }
  if (!p.lock) {
    return `no image lock at ${p.path}: the VMs' containerDisk and the images kubeadm, Calico and the labs pull are pinned by tag only (a tag can move between a lab's test and the class); where the registries are reachable, run \`labvirt images lock\` and commit ${p.path}`;
  }
  if (p.unpinned.length === 0) return undefined;
  const shown = p.unpinned.slice(0, 3).join(', ');
  const more = p.unpinned.length > 3 ? ` and ${p.unpinned.length - 3} more` : '';
  return `${p.unpinned.length} of the ${p.inUse} images the envs use are not in the image lock ${p.path} (${shown}${more}) and are pulled by tag: run \`labvirt images lock\` again where the registries are reachable`;
}
