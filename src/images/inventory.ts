import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { Config } from '../config/index.js';
import { normalizeImage } from './reference.js';

/** Where the inventory reads what labvirt's envs run. */
export interface InventoryDirs {
  /** `vm-templates/` (its `images/` holds lab-images.txt and kubeadm-images.yaml). */
  vmTemplates: string;
  /** `cloud-init/` (control-plane.sh pins Calico's version). */
  cloudInit: string;
}

/** Who pulls an image. */
export type ImageConsumer =
  /** The host cluster's nodes, as a VM's containerDisk. */
  | 'host'
  /** Every node of a student cluster. */
  | 'all-nodes'
  /** Only a student cluster's control plane (kubeadm's control-plane images). */
  | 'control-plane';

export interface ImageUse {
  /** As labvirt writes it (`busybox:1.36`, `registry.k8s.io/pause:3.9`). */
  image: string;
  /** Normalised (`docker.io/library/busybox:1.36`): the lock's key. */
  name: string;
  pulledBy: ImageConsumer;
  /** Kubernetes minors whose clusters run it; undefined: every flavor. */
  minors?: string[];
  /** Why it is needed, e.g. `kubeadm 1.30`, `Calico v3.29.3`, `labs`. */
  usedBy: string[];
}

/** Calico's images in its manifest (calico-vxlan.yaml), pulled from quay.io (cloud-init's calico_from_quay). */
const CALICO_IMAGES = ['cni', 'node', 'kube-controllers'];
/** kubeadm images only the control plane runs (static pods); the rest run on every node. */
const CONTROL_PLANE_ONLY = /\/(kube-apiserver|kube-controller-manager|kube-scheduler|etcd):/;

export const LAB_IMAGES_FILE = 'images/lab-images.txt';
export const KUBEADM_IMAGES_FILE = 'images/kubeadm-images.yaml';

/** The lines of a list file, comments and blanks dropped. */
function listFile(path: string): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/** The Calico release cloud-init/control-plane.sh installs. */
export function calicoVersion(dirs: InventoryDirs): string {
  const path = join(dirs.cloudInit, 'control-plane.sh');
  const m = /^readonly CALICO_VERSION=(v[0-9][0-9.]*)$/m.exec(readFileSync(path, 'utf8'));
  if (!m) throw new Error(`${path} does not pin CALICO_VERSION`);
  return m[1]!;
}

interface KubeadmRelease {
  kubernetes: string;
  images: string[];
}

/** kubeadm's images per minor, from vm-templates/images/kubeadm-images.yaml. */
export function kubeadmReleases(dirs: InventoryDirs): Record<string, KubeadmRelease> {
  const path = join(dirs.vmTemplates, KUBEADM_IMAGES_FILE);
  const doc = parse(readFileSync(path, 'utf8')) as Record<string, Partial<KubeadmRelease>> | null;
  const out: Record<string, KubeadmRelease> = {};
  for (const [minor, release] of Object.entries(doc ?? {})) {
    if (
      typeof release?.kubernetes !== 'string' ||
      !Array.isArray(release.images) ||
      !release.images.every((i) => typeof i === 'string')
    ) {
      throw new Error(`${path}: ${minor} needs "kubernetes: v<version>" and a list of images`);
    }
    out[minor] = { kubernetes: release.kubernetes, images: release.images };
  }
  return out;
}

/**
 * Every image labvirt's rendered envs and labs use for this configuration:
 * each flavor's containerDisk, kubeadm's images for each flavor's minor,
 * Calico's, and the labs' (lab-images.txt). Throws, naming the file to
 * edit, when a flavor's minor has no kubeadm image list (unless told to
 * skip those: rendering pins what it can).
 */
export function imagesInUse(
  config: Config,
  dirs: InventoryDirs,
  options: { skipUnknownMinors?: boolean } = {},
): ImageUse[] {
  const uses = new Map<string, ImageUse>();
  const add = (image: string, pulledBy: ImageConsumer, usedBy: string, minor?: string) => {
    const name = normalizeImage(image);
    const use = uses.get(name);
    if (!use) {
      uses.set(name, {
        image,
        name,
        pulledBy,
        usedBy: [usedBy],
        minors: minor ? [minor] : undefined,
      });
      return;
    }
    if (!use.usedBy.includes(usedBy)) use.usedBy.push(usedBy);
    if (use.minors && minor && !use.minors.includes(minor)) use.minors.push(minor);
    if (!minor) use.minors = undefined;
    if (pulledBy === 'all-nodes' && use.pulledBy === 'control-plane') use.pulledBy = pulledBy;
  };

  const releases = kubeadmReleases(dirs);
  for (const [flavorName, flavor] of Object.entries(config.flavors)) {
    add(flavor.image ?? config.vm.image, 'host', `containerDisk of ${flavorName}`);
    const minor = flavor.kubernetesVersion;
    const release = releases[minor];
    if (!release) {
      if (options.skipUnknownMinors) continue;
      throw new Error(
        `no kubeadm image list for Kubernetes ${minor} (flavor ${flavorName}) in ${join(dirs.vmTemplates, KUBEADM_IMAGES_FILE)}: add what \`kubeadm config images list --kubernetes-version v${minor}.<patch>\` prints`,
      );
    }
    for (const image of release.images) {
      add(
        image,
        CONTROL_PLANE_ONLY.test(normalizeImage(image)) ? 'control-plane' : 'all-nodes',
        `kubeadm ${release.kubernetes}`,
        minor,
      );
    }
  }
  const calico = calicoVersion(dirs);
  for (const image of CALICO_IMAGES)
    add(`quay.io/calico/${image}:${calico}`, 'all-nodes', `Calico ${calico}`);
  for (const image of listFile(join(dirs.vmTemplates, LAB_IMAGES_FILE)))
    add(image, 'all-nodes', 'labs');
  return [...uses.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The images one node of a student cluster pulls (normalised names): what
 * its guest pre-pulls by digest when the lock has them.
 */
export function nodeImages(
  uses: readonly ImageUse[],
  minor: string,
  role: 'control-plane' | 'worker',
): string[] {
  return uses
    .filter((u) => u.pulledBy !== 'host')
    .filter((u) => !u.minors || u.minors.includes(minor))
    .filter((u) => role === 'control-plane' || u.pulledBy === 'all-nodes')
    .map((u) => u.name);
}
