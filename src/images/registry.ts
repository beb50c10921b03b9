import { createHash } from 'node:crypto';
import { fetch, type Dispatcher } from 'undici';
import {
  SHA256_DIGEST,
  normalizedName,
  registryEndpoint,
  type ImageReference,
} from './reference.js';

/** How `resolveDigest` reaches registries. */
export interface RegistryAccess {
  /**
   * Per registry host, mirror URLs tried in order before the registry itself
   * (`vm.registryMirrors`, as containerd in the guests uses them).
   */
  mirrors?: Readonly<Record<string, readonly string[]>>;
  /**
   * Per registry host, a URL used instead of the registry's own endpoint (an
   * internal registry that serves the same names; a fake one in tests).
   */
  endpoints?: Readonly<Record<string, string>>;
  /** A proxy agent, or undici's global dispatcher when absent. */
  dispatcher?: Dispatcher;
  /** Per request; default 30 s. */
  timeoutMs?: number;
}

/**
 * What to ask for: a multi-platform index first (its digest is the same on
 * every architecture, and is what `image@sha256:…` pulls resolve), then a
 * single manifest for images that have no index.
 */
const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

export interface ResolvedDigest {
  digest: string;
  /** The base URL that answered. */
  from: string;
}

/** Thrown when no endpoint of a registry gave a digest; names the image and each endpoint tried. */
export class ImageResolveError extends Error {
  constructor(
    readonly image: string,
    readonly kind: 'not-found' | 'unreachable' | 'refused',
    message: string,
  ) {
    super(message);
    this.name = 'ImageResolveError';
  }
}

interface Attempt {
  base: string;
  kind: ImageResolveError['kind'];
  why: string;
}

/** One bearer token per realm, service and scope, for the life of a `RegistryClient`. */
type TokenCache = Map<string, Promise<string>>;

/**
 * Resolves image tags to digests through the OCI distribution API:
 * `HEAD /v2/<repository>/manifests/<tag>`, answering a `401` with a
 * `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge by fetching
 * an anonymous token from the realm (Docker Hub, quay.io, registry.k8s.io
 * and ghcr.io all work this way) and asking again.
 */
export class RegistryClient {
  private readonly tokens: TokenCache = new Map();

  constructor(private readonly access: RegistryAccess = {}) {}

  /** The digest the image's tag points at, from its mirrors or its registry. */
  async resolveDigest(ref: ImageReference): Promise<ResolvedDigest> {
    const name = normalizedName(ref);
    const own = this.access.endpoints?.[ref.registry] ?? registryEndpoint(ref.registry);
    const bases = [...(this.access.mirrors?.[ref.registry] ?? []), own].map((b) =>
      b.replace(/\/+$/, ''),
    );
    const attempts: Attempt[] = [];
    for (const base of bases) {
      const result = await this.fromEndpoint(base, ref);
      if ('digest' in result) return result;
      attempts.push(result);
    }
    // The most telling failure decides the kind: a registry that answered
    // "no such tag" says more than a mirror that was down.
    const kind = attempts.some((a) => a.kind === 'not-found')
      ? 'not-found'
      : attempts.some((a) => a.kind === 'refused')
        ? 'refused'
        : 'unreachable';
    const detail = attempts.map((a) => `${a.base}: ${a.why}`).join('; ');
    const what = ref.original === name ? name : `${ref.original} (${name})`;
    const headline =
      kind === 'not-found'
        ? `image ${what} not found`
        : kind === 'unreachable'
          ? `registry ${ref.registry} unreachable for ${what}`
          : `registry ${ref.registry} refused ${what}`;
    throw new ImageResolveError(ref.original, kind, `${headline}: ${detail}`);
  }

  private async fromEndpoint(base: string, ref: ImageReference): Promise<ResolvedDigest | Attempt> {
    const url = `${base}/v2/${ref.repository}/manifests/${encodeURIComponent(ref.tag)}`;
    let token: string | undefined;
    const ask = async (method: 'HEAD' | 'GET') => {
      let res = await this.request(url, method, token);
      if (res.status === 401 && token === undefined) {
        token = await this.tokenFor(res.headers.get('www-authenticate'), ref);
        res = await this.request(url, method, token);
      }
      return res;
    };
    try {
      const head = await ask('HEAD');
      const header = head.headers.get('docker-content-digest') ?? '';
      if (head.ok && SHA256_DIGEST.test(header)) return { digest: header, from: base };
      // Some registries answer HEAD without the digest header (or refuse
      // HEAD): the digest is then the hash of the manifest GET returns.
      const res = head.ok || head.status === 405 ? await ask('GET') : head;
      if (res.ok) {
        const body = Buffer.from(await res.arrayBuffer());
        const sent = res.headers.get('docker-content-digest') ?? '';
        const digest = SHA256_DIGEST.test(sent)
          ? sent
          : `sha256:${createHash('sha256').update(body).digest('hex')}`;
        return { digest, from: base };
      }
      if (res.status === 404) {
        return { base, kind: 'not-found', why: `no tag "${ref.tag}" in ${ref.repository} (404)` };
      }
      return { base, kind: 'refused', why: `HTTP ${res.status} for ${ref.repository}:${ref.tag}` };
    } catch (err) {
      if (err instanceof TokenError) return { base, kind: 'refused', why: err.message };
      return { base, kind: 'unreachable', why: describeNetworkError(err) };
    }
  }

  private async request(url: string, method: 'HEAD' | 'GET', token?: string) {
    const res = await fetch(url, {
      method,
      headers: {
        accept: MANIFEST_TYPES,
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      redirect: 'follow',
      dispatcher: this.access.dispatcher,
      signal: AbortSignal.timeout(this.access.timeoutMs ?? 30_000),
    });
    // HEAD has no body; a GET body we do not read is released.
    if (method === 'HEAD' || !res.ok) await res.body?.cancel().catch(() => undefined);
    return res;
  }

  /** An anonymous pull token from the challenge's realm. */
  private async tokenFor(challenge: string | null, ref: ImageReference): Promise<string> {
    const params = parseBearerChallenge(challenge);
    if (!params) {
      throw new TokenError(
        `asks for credentials (${challenge ?? 'no WWW-Authenticate header'}); labvirt resolves anonymously: use a mirror or an endpoint that allows anonymous pulls`,
      );
    }
    const realm = new URL(params.realm);
    if (params.service) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', params.scope ?? `repository:${ref.repository}:pull`);
    const key = realm.toString();
    let token = this.tokens.get(key);
    if (!token) {
      token = this.fetchToken(realm);
      this.tokens.set(key, token);
      token.catch(() => this.tokens.delete(key));
    }
    return token;
  }

  private async fetchToken(realm: URL): Promise<string> {
    const res = await fetch(realm, {
      dispatcher: this.access.dispatcher,
      signal: AbortSignal.timeout(this.access.timeoutMs ?? 30_000),
    });
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new TokenError(`token service ${realm.origin}${realm.pathname} answered ${res.status}`);
    }
    const body = (await res.json().catch(() => ({}))) as {
      token?: unknown;
      access_token?: unknown;
    };
    const token = body.token ?? body.access_token;
    if (typeof token !== 'string' || !token) {
      throw new TokenError(`token service ${realm.origin}${realm.pathname} sent no token`);
    }
    return token;
  }
}

class TokenError extends Error {}

/** `Bearer realm="…",service="…",scope="…"` → its parameters; undefined for other schemes. */
export function parseBearerChallenge(
  header: string | null | undefined,
): { realm: string; service?: string; scope?: string } | undefined {
  if (!header) return undefined;
  const m = /^\s*Bearer\s+(.*)$/i.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[1]!.matchAll(/([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))/g)) {
    params[p[1]!.toLowerCase()] = p[2] ?? p[3] ?? '';
  }
  if (!params.realm || !/^https?:\/\//.test(params.realm)) return undefined;
  return { realm: params.realm, service: params.service, scope: params.scope };
}

function describeNetworkError(err: unknown): string {
  const e = err as Error & { cause?: Error & { code?: string } };
  if (e?.name === 'TimeoutError') return 'no answer in time';
  const cause = e?.cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return e?.message ?? String(err);
}
