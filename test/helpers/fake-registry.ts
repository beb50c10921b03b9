import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A container registry on loopback speaking the part of the OCI distribution
 * API that `labvirt images lock` uses: `HEAD`/`GET /v2/<name>/manifests/<tag>`
 * behind Docker Hub's token flow (a 401 with `WWW-Authenticate: Bearer
 * realm=…,service=…,scope=…`, an anonymous token from the realm, the request
 * again with `Authorization: Bearer`).
 */
export interface FakeRegistry {
  readonly url: string;
  /** Adds `repository:tag`; returns its digest. `digestHeader: false` leaves Docker-Content-Digest out. */
  push(repository: string, tag: string, options?: { digestHeader?: boolean }): string;
  /** Every request: method, path, and the headers that matter. */
  readonly requests: { method: string; path: string; accept?: string; authorization?: string }[];
  /** Token requests' query strings. */
  readonly tokenRequests: URLSearchParams[];
  stop(): Promise<void>;
}

interface Manifest {
  body: Buffer;
  digest: string;
  headDigest: boolean;
}

const INDEX_TYPE = 'application/vnd.oci.image.index.v1+json';

export async function startFakeRegistry(
  options: { auth?: boolean; service?: string } = {},
): Promise<FakeRegistry> {
  const auth = options.auth ?? true;
  const service = options.service ?? 'fake-registry';
  const manifests = new Map<string, Manifest>();
  const requests: FakeRegistry['requests'] = [];
  const tokenRequests: URLSearchParams[] = [];
  const tokenFor = (scope: string) =>
    `token-${createHash('sha256').update(scope).digest('hex').slice(0, 16)}`;

  const server: Server = createServer((req: IncomingMessage, res) => {
    const url = new URL(req.url ?? '/', 'http://registry');
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      accept: req.headers.accept,
      authorization: req.headers.authorization,
    });
    if (url.pathname === '/token') {
      tokenRequests.push(url.searchParams);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token: tokenFor(url.searchParams.get('scope') ?? '') }));
      return;
    }
    const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (!m || (req.method !== 'HEAD' && req.method !== 'GET')) {
      res.writeHead(404).end();
      return;
    }
    const [, repository, tag] = m;
    const scope = `repository:${repository}:pull`;
    if (auth && req.headers.authorization !== `Bearer ${tokenFor(scope)}`) {
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="${base}/token",service="${service}",scope="${scope}"`,
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED' }] }));
      return;
    }
    const manifest = manifests.get(`${repository}:${decodeURIComponent(tag!)}`);
    if (!manifest) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN' }] }));
      return;
    }
    const headers: Record<string, string | number> = {
      'content-type': INDEX_TYPE,
      'content-length': manifest.body.length,
    };
    // Some registries leave the digest header out: the client hashes the body then.
    if (manifest.headDigest) headers['docker-content-digest'] = manifest.digest;
    res.writeHead(200, headers);
    res.end(req.method === 'GET' ? manifest.body : undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: base,
    requests,
    tokenRequests,
    push(repository, tag, opts = {}) {
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: INDEX_TYPE,
          manifests: [{ platform: { architecture: 'amd64', os: 'linux' }, tag, repository }],
        }),
      );
      const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      manifests.set(`${repository}:${tag}`, {
        body,
        digest,
        headDigest: opts.digestHeader ?? true,
      });
      return digest;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
