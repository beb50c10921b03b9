/**
 * Images pinned by digest: what labvirt's envs pull (inventory), the OCI
 * distribution client that resolves tags to digests (registry), and the
 * lock file that rendering reads (lock). See docs/host-cluster.md.
 */
export {
  parseImageReference,
  normalizeImage,
  normalizedName,
  registryEndpoint,
  type ImageReference,
} from './reference.js';
export {
  formatImageLock,
  lockedDigest,
  parseImageLock,
  pinImage,
  readImageLock,
  writeImageLock,
  type ImageLock,
} from './lock.js';
export {
  ImageResolveError,
  RegistryClient,
  parseBearerChallenge,
  type RegistryAccess,
  type ResolvedDigest,
} from './registry.js';
export {
  KUBEADM_IMAGES_FILE,
  LAB_IMAGES_FILE,
  calicoVersion,
  imagesInUse,
  kubeadmReleases,
  nodeImages,
  type ImageConsumer,
  type ImageUse,
  type InventoryDirs,
} from './inventory.js';
export {
  ImageLockError,
  lockImages,
  registryDispatcher,
  resolveImages,
  type LockResult,
} from './resolve.js';

/** Where the lock lives unless `vm.imagesLock` says otherwise, relative to vm-templates/. */
export const DEFAULT_LOCK_FILE = 'images/images.lock.yaml';
