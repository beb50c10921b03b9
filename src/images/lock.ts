import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { parse } from 'yaml';
import { SHA256_DIGEST, normalizeImage, parseImageReference } from './reference.js';

/**
 * The image lock: for each image labvirt's envs use, the digest its tag
 * pointed at when `labvirt images lock` resolved it (a manifest list's
 * digest: the same for every platform). Keys are normalised references
 * (`docker.io/library/busybox:1.36`).
 */
export interface ImageLock {
  readonly images: ReadonlyMap<string, string>;
  /** Where it was read from, for messages. */
  readonly source?: string;
}

const HEADER = [
  '# Image digests labvirt renders with (`labvirt images lock` wrote this file).',
  '# Commit it with the project; run the command again to move to newer images.',
  '# One image a line, `<registry>/<repository>:<tag>: sha256:<digest>`, so',
  '# vm-templates/images/bake.sh can read it without a YAML parser.',
];

/** The lock as text: sorted, one image a line. */
export function formatImageLock(images: ReadonlyMap<string, string>): string {
  const keys = [...images.keys()].sort();
  const lines = [...HEADER, 'images:'];
  for (const key of keys) lines.push(`  ${key}: ${images.get(key)!}`);
  return `${lines.join('\n')}\n`;
}

/** Parses a lock file's text; throws an error naming the file and the bad entry. */
export function parseImageLock(text: string, source = 'image lock'): ImageLock {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`${source} is not valid YAML: ${(err as Error).message}`);
  }
  const raw = (doc as { images?: unknown } | null)?.images;
  if (!doc || typeof doc !== 'object' || !raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`${source} must hold a mapping "images: { <image>: sha256:<digest> }"`);
  }
  const images = new Map<string, string>();
  for (const [key, digest] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof digest !== 'string' || !SHA256_DIGEST.test(digest)) {
      throw new Error(`${source}: ${key}: "${String(digest)}" is not a sha256 digest`);
    }
    let name: string;
    try {
      name = normalizeImage(key);
    } catch (err) {
      throw new Error(`${source}: ${(err as Error).message}`);
    }
    images.set(name, digest);
  }
  return { images, source };
}

// Read on every render: cached by path, modification time and size.
const cache = new Map<string, { mtimeMs: number; size: number; lock: ImageLock }>();

/** The lock at `path`, or undefined when there is no file there. */
export function readImageLock(path: string): ImageLock | undefined {
  let stat;
  try {
    stat = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the image lock ${path}: ${(err as Error).message}`);
  }
  const cached = cache.get(path);
  if (cached && cached.mtimeMs === stat.mtimeMs && cached.size === stat.size) return cached.lock;
  const lock = parseImageLock(readFileSync(path, 'utf8'), path);
  cache.set(path, { mtimeMs: stat.mtimeMs, size: stat.size, lock });
  return lock;
}

/** Writes the lock whole or not at all (a temporary file renamed over the old one). */
export function writeImageLock(path: string, images: ReadonlyMap<string, string>): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, formatImageLock(images));
  renameSync(tmp, path);
}

/** The digest the lock has for an image written any way, if any. */
export function lockedDigest(lock: ImageLock | undefined, image: string): string | undefined {
  if (!lock) return undefined;
  return lock.images.get(normalizeImage(image));
}

/**
 * The image as written plus `@<digest>` when the lock has it
 * (`busybox:1.36@sha256:…`: the tag stays readable, the digest decides);
 * unchanged otherwise, or when it already names a digest.
 */
export function pinImage(lock: ImageLock | undefined, image: string): string {
  if (!lock) return image;
  const ref = parseImageReference(image);
  if (ref.digest) return image;
  const digest = lockedDigest(lock, image);
  return digest ? `${ref.original}@${digest}` : image;
}
