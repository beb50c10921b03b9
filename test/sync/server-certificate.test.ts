import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCa, issueCertificate, type KeyPairPem } from '../../src/pki/index.js';
import { createExecutor, generateKeyPair, type Executor } from '../../src/ssh/index.js';
import { pipeToApi, runRelay } from '../helpers/relay-far-end.js';
import {
  relayError,
  RELAY_SCRIPT,
  serverCertificateProblem,
  StudentClusterWatch,
  type StudentApiTls,
} from '../../src/sync/student.js';

/** The student API server's certificate, checked by hand against the env's CA before the watch sends anything. */
describe('NodePort sync: the student API server’s certificate', () => {
  let ca: KeyPairPem;
  let otherCa: KeyPairPem;
  const caKey = () => new X509Certificate(ca.certPem).publicKey;
  const serving = (
    issuer: KeyPairPem,
    overrides: Partial<Parameters<typeof issueCertificate>[1]> = {},
  ) =>
    issueCertificate(issuer, {
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: ['kubernetes', 'kubernetes.default', 'control-plane'],
      ipAddresses: ['10.96.0.1'],
      ...overrides,
    });
  const problem = async (pem: string, now?: Date) =>
    serverCertificateProblem(new X509Certificate(pem), caKey(), now);

  beforeAll(async () => {
    // RSA, as the envs' CAs are; an unrelated one stands for another env's.
    [ca, otherCa] = await Promise.all([
      generateCa({ commonName: 'kubernetes' }),
      generateCa({ commonName: 'kubernetes' }),
    ]);
  });

  it('accepts the env’s API server certificate, as kubeadm issues it', async () => {
    expect(await problem((await serving(ca)).certPem)).toBeUndefined();
  });

  it('refuses another env’s API server (another CA, even with the same names)', async () => {
    expect(await problem((await serving(otherCa)).certPem)).toMatch(
      /^the API server's certificate \(CN=kube-apiserver\) is not signed by the env's CA$/,
    );
  });

  it('refuses an expired certificate, and one not valid yet', async () => {
    const expired = await serving(ca, { days: 0 });
    expect(await problem(expired.certPem)).toMatch(/is not valid now \(valid from .* to .*\)$/);
    const later = new Date(Date.now() + 400 * 86_400_000);
    expect(await problem((await serving(ca)).certPem, later)).toMatch(/is not valid now/);
    const earlier = new Date(Date.now() - 86_400_000);
    expect(await problem((await serving(ca)).certPem, earlier)).toMatch(/is not valid now/);
  });

  it('refuses a certificate for another host (kubernetes is not among its DNS names, whatever its CN)', async () => {
    const other = await serving(ca, { commonName: 'kubernetes', dnsNames: ['etcd.local'] });
    expect(await problem(other.certPem)).toMatch(/is not for kubernetes$/);
  });

  it('refuses the CA itself and a client certificate of the CA shown as a server’s', async () => {
    expect(await problem(ca.certPem)).toMatch(/is a CA certificate$/);
    const client = await serving(ca, { usage: 'client' });
    expect(await problem(client.certPem)).toMatch(/is not for a TLS server/);
  });

  it('tells a relay’s other failures by its last words, without openssl’s chatter', () => {
    const said = 'depth=0 CN = kube-apiserver\nverify return:1\nwrite:errno=32\nDONE\n';
    expect(relayError(new Error('socket hang up'), said, 1).message).toBe(
      'socket hang up (the relay said: write:errno=32)',
    );
    expect(relayError(new Error('socket hang up'), 'verify return:1\nDONE\n', 0).message).toBe(
      'socket hang up',
    );
  });

  it('refuses no certificate at all', () => {
    expect(serverCertificateProblem(undefined, caKey())).toBe('the API server sent no certificate');
  });
});

/**
 * On the wire: the watch reaches an API server through a real SSH server (as
 * the control plane's sshd) — its forwarding (`labvirt` TLS), or the relay
 * it runs with this machine's bash and openssl (`guest` TLS, the default) —
 * and the API server records every byte it receives after the handshake. A
 * server whose certificate is not from the env's CA must receive nothing:
 * not the request, not the path.
 */
describe.each([
  ['labvirt', "the API server's certificate (CN=kube-apiserver) is not signed by the env's CA"],
  // openssl finds the env's CA by the issuer's name (both are `kubernetes`) and its signature fails.
  ['guest', "the API server's certificate was refused: certificate signature failure"],
] as const)('NodePort sync: a refused API server receives nothing (TLS in %s)', (tls, refusal) => {
  let ca: KeyPairPem;
  let client: KeyPairPem;
  let sshd: ssh2.Server;
  let executor: Executor;
  const servers: TlsServer[] = [];
  let apiPort = 0;
  /** The guest's PATH (a node without openssl has none of it). */
  let guestPath = process.env.PATH ?? '';

  beforeAll(async () => {
    ca = await generateCa({ commonName: 'kubernetes' });
    client = await issueCertificate(ca, {
      commonName: 'labvirt:nodeport-sync',
      organization: 'system:masters',
      usage: 'client',
      algorithm: 'ecdsa',
    });
    // The guest's sshd: every forward, and the relay's 127.0.0.1:6443, go to
    // whichever API server the test runs now.
    sshd = new ssh2.Server({ hostKeys: [generateKeyPair().private] }, (conn) => {
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('error', () => undefined);
      conn.on('ready', () => {
        conn.on('tcpip', (accept) => pipeToApi(accept(), apiPort));
        conn.on('session', (acceptSession) =>
          acceptSession().on('exec', (accept, reject, info) => {
            // Exactly labvirt's relay, as root logs in (no sudo), nothing else.
            if (info.command !== `/bin/bash -c '${RELAY_SCRIPT.replaceAll("'", `'\\''`)}'`)
              return reject?.();
            runRelay(accept(), apiPort, guestPath);
          }),
        );
      });
    });
    await new Promise<void>((r) => sshd.listen(0, '127.0.0.1', r));
    const sshPort = (sshd.address() as AddressInfo).port;
    executor = createExecutor({
      privateKey: generateKeyPair().private,
      user: 'root',
      resolve: () => ({ host: '127.0.0.1', port: sshPort }),
    });
  });

  afterAll(async () => {
    await executor?.close();
    for (const s of servers) s.close();
    await new Promise<void>((r) => sshd?.close(() => r()));
  });

  /** An API server with `serving`'s certificate; `received` is every byte of application data it received. */
  async function apiServer(serving: KeyPairPem) {
    const seen = { received: '', connections: 0 };
    const server = createTlsServer({ cert: serving.certPem, key: serving.keyPem }, (socket) => {
      socket.on('error', () => undefined);
      socket.on('data', (d: Buffer) => {
        seen.received += d.toString('latin1');
        // An empty list, then the connection ends: enough for a list to succeed.
        const body = '{"kind":"ServiceList","metadata":{"resourceVersion":"7"},"items":[]}';
        socket.end(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
        );
      });
    });
    server.on('connection', () => seen.connections++);
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    apiPort = (server.address() as AddressInfo).port;
    return seen;
  }

  function watch() {
    const seen = { lists: 0, errors: [] as string[] };
    const w = new StudentClusterWatch({
      envId: 'refused',
      executor,
      tls: tls as StudentApiTls,
      controlPlaneIp: () => Promise.resolve('10.0.0.10'),
      ca,
      client,
      resyncMs: 600_000,
      retryInitialMs: 50,
      retryMaxMs: 100,
      onServices: () => void seen.lists++,
      onReachable: (reachable, error) => void (reachable || seen.errors.push(error ?? '')),
    });
    return { w, seen };
  }

  it('sends another CA’s API server no request, and says why', async () => {
    const other = await generateCa({ commonName: 'kubernetes' });
    const server = await apiServer(
      await issueCertificate(other, {
        commonName: 'kube-apiserver',
        usage: 'server',
        dnsNames: ['kubernetes'],
      }),
    );
    const { w, seen } = watch();
    await w.start();
    await expect
      .poll(() => seen.errors.length, { message: 'three refused attempts', timeout: 30_000 })
      .toBeGreaterThanOrEqual(3);
    await w.stop();
    expect(server.connections).toBeGreaterThanOrEqual(3);
    expect(server.received).toBe('');
    expect(seen.lists).toBe(0);
    expect(seen.errors[0]).toBe(refusal);
  });

  it('sends the env’s own API server its request (the same set-up lists)', async () => {
    const server = await apiServer(
      await issueCertificate(ca, {
        commonName: 'kube-apiserver',
        usage: 'server',
        dnsNames: ['kubernetes'],
      }),
    );
    const { w, seen } = watch();
    await w.start();
    await expect.poll(() => seen.lists, { message: 'a list', timeout: 30_000 }).toBeGreaterThan(0);
    await w.stop();
    expect(server.received).toMatch(/^GET \/api\/v1\/services HTTP\/1\.1\r\n/);
    expect(seen.errors).toEqual([]);
  });
  it.runIf(tls === 'guest')(
    'says the API server is not listening, and that a node has no openssl',
    async () => {
      const closed = await apiServer(
        await issueCertificate(ca, { commonName: 'x', usage: 'server' }),
      );
      servers.pop()?.close();
      expect(closed.connections).toBe(0);
      const down = watch();
      await down.w.start();
      await expect.poll(() => down.seen.errors.length, { timeout: 30_000 }).toBeGreaterThan(0);
      await down.w.stop();
      expect(down.seen.errors[0]).toBe('connect to the API server (127.0.0.1:6443): ECONNREFUSED');

      guestPath = '/nonexistent';
      try {
        const bare = watch();
        await bare.w.start();
        await expect.poll(() => bare.seen.errors.length, { timeout: 30_000 }).toBeGreaterThan(0);
        await bare.w.stop();
        expect(bare.seen.errors[0]).toBe(
          'openssl is not installed on the control plane (the relay needs it; or set sync.apiTls: labvirt)',
        );
      } finally {
        guestPath = process.env.PATH ?? '';
      }
    },
  );
});
