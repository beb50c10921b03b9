/**
 * Container image references as containerd and the kubelet read them
 * (distribution's "docker reference" grammar, normalised the same way:
 * `busybox:1.36` is `docker.io/library/busybox:1.36`).
 */
export interface ImageReference {
  /** As written where labvirt found it, e.g. `busybox:1.36`. */
  readonly original: string;
  /** Registry host, e.g. `docker.io`, `registry.k8s.io`, `127.0.0.1:5000`. */
  readonly registry: string;
  /** Repository inside the registry, e.g. `library/busybox`, `calico/node`. */
  readonly repository: string;
  readonly tag: string;
  /** `sha256:…` when the reference already names one. */
  readonly digest?: string;
}

const DOCKER_HUB = 'docker.io';
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?$/;
export const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Parses an image reference; throws an error naming it when it is not one. */
export function parseImageReference(text: string): ImageReference {
  const original = text.trim();
  const bad = (why: string) => new Error(`"${text}" is not an image reference: ${why}`);
  if (!original) throw bad('it is empty');
  let rest = original;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!SHA256_DIGEST.test(digest)) throw bad(`"${digest}" is not a sha256 digest`);
  }
  let tag = 'latest';
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`"${tag}" is not a valid tag`);
  }
  const parts = rest.split('/');
  const first = parts[0]!;
  // The first component is a registry when it looks like a host name.
  const hasRegistry =
    parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  let registry = hasRegistry ? first : DOCKER_HUB;
  if (hasRegistry && !HOST.test(first)) throw bad(`"${first}" is not a registry host`);
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  const path = hasRegistry ? parts.slice(1) : parts;
  if (path.length === 0 || path.some((c) => !COMPONENT.test(c))) {
    throw bad('a repository name is lowercase letters, digits and . _ - between slashes');
  }
  if (registry === DOCKER_HUB && path.length === 1) path.unshift('library');
  return { original, registry, repository: path.join('/'), tag, digest };
}

/** `registry/repository:tag`, the form containerd stores and the lock file keys on. */
export function normalizedName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}:${ref.tag}`;
}

/** Normalises a reference written any way (`nginx:1.27-alpine` → `docker.io/library/nginx:1.27-alpine`). */
export function normalizeImage(text: string): string {
  return normalizedName(parseImageReference(text));
}

/** The registry's own API endpoint (Docker Hub's is not at docker.io). */
export function registryEndpoint(registry: string): string {
  return registry === DOCKER_HUB ? 'https://registry-1.docker.io' : `https://${registry}`;
}
