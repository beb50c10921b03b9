import { EnvHttpProxyAgent, type Dispatcher } from 'undici';
import type { Config } from '../config/index.js';
import type { ImageUse } from './inventory.js';
import { writeImageLock } from './lock.js';
import { parseImageReference } from './reference.js';
import { ImageResolveError, RegistryClient, type RegistryAccess } from './registry.js';

export interface LockResult {
  /** Normalised name → digest, for every image asked for. */
  images: Map<string, string>;
  /** Where each digest came from (a mirror or the registry). */
  sources: Map<string, string>;
}

/** Thrown when any image could not be resolved; lists every one (nothing is written then). */
export class ImageLockError extends Error {
  constructor(readonly failures: ImageResolveError[]) {
    super(
      `could not resolve ${failures.length} image${failures.length === 1 ? '' : 's'}; the lock was not changed:\n` +
        failures.map((f) => `  - ${f.message}`).join('\n'),
    );
    this.name = 'ImageLockError';
  }
}

/**
 * Resolves every image to its digest, a few at a time. All or nothing: one
 * failure and the caller gets an `ImageLockError` naming each image that
 * failed and why.
 */
export async function resolveImages(
  uses: readonly ImageUse[],
  access: RegistryAccess,
  concurrency = 4,
): Promise<LockResult> {
  const client = new RegistryClient(access);
  const images = new Map<string, string>();
  const sources = new Map<string, string>();
  const failures: ImageResolveError[] = [];
  const queue = [...uses];
  const worker = async () => {
    for (let use = queue.shift(); use; use = queue.shift()) {
      try {
        const ref = parseImageReference(use.image);
        const { digest, from } = await client.resolveDigest(ref);
        images.set(use.name, digest);
        sources.set(use.name, from);
      } catch (err) {
        failures.push(
          err instanceof ImageResolveError
            ? err
            : new ImageResolveError(
                use.image,
                'refused',
                `${use.image}: ${(err as Error).message}`,
              ),
        );
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  if (failures.length > 0) {
    failures.sort((a, b) => a.image.localeCompare(b.image));
    throw new ImageLockError(failures);
  }
  return { images, sources };
}

/**
 * Resolves every image and writes the lock at `out`: whole, and only when
 * every image resolved (an `ImageLockError` leaves the old file as it was).
 */
export async function lockImages(
  uses: readonly ImageUse[],
  out: string,
  access: RegistryAccess,
  concurrency?: number,
): Promise<LockResult> {
  const result = await resolveImages(uses, access, concurrency);
  writeImageLock(out, result.images);
  return result;
}

/**
 * How labvirt reaches registries from where it runs: through `vm.proxy`
 * when the config has one (the classroom's proxy), else through the
 * `http_proxy`/`https_proxy`/`no_proxy` of labvirt's own environment.
 */
export function registryDispatcher(config: Config): Dispatcher {
  const proxy = config.vm.proxy;
  if (proxy && (proxy.http || proxy.https)) {
    return new EnvHttpProxyAgent({
      httpProxy: proxy.http,
      httpsProxy: proxy.https ?? proxy.http,
      noProxy: ['localhost', '127.0.0.1', ...proxy.noProxy].join(','),
    });
  }
  return new EnvHttpProxyAgent();
}
