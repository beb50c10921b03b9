import { X509Certificate, createPublicKey, createHash } from 'node:crypto';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  BOOTSTRAP_TOKEN_PATTERN,
  caCertHash,
  generateBootstrapToken,
  generateCa,
  issueCertificate,
} from '../../src/pki/index.js';

describe('pki', () => {
  it('makes a CA whose server certificates a TLS client trusts', async () => {
    const ca = await generateCa({ commonName: 'labvirt-test-ca', algorithm: 'ecdsa' });
    const leaf = await issueCertificate(ca, {
      commonName: 'sim',
      usage: 'server',
      ipAddresses: ['127.0.0.1'],
      dnsNames: ['localhost'],
    });
    expect(new X509Certificate(leaf.certPem).checkIssued(new X509Certificate(ca.certPem))).toBe(
      true,
    );
    const server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) =>
      res.end('ok'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const body = await new Promise<string>((resolve, reject) => {
      request({ host: '127.0.0.1', port, ca: ca.certPem }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(text));
      })
        .on('error', reject)
        .end();
    });
    server.close();
    expect(body).toBe('ok');
  });

  it('makes an RSA CA (what kubeadm expects) and pins it the way kubeadm does', async () => {
    const ca = await generateCa({ commonName: 'kubernetes' });
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyType).toBe('rsa');
    const spki = createPublicKey(ca.keyPem).export({ type: 'spki', format: 'der' });
    expect(caCertHash(ca.certPem)).toBe(
      `sha256:${createHash('sha256').update(spki).digest('hex')}`,
    );
  });

  it('generates bootstrap tokens in kubeadm format, never the same twice', () => {
    const tokens = new Set(Array.from({ length: 200 }, () => generateBootstrapToken()));
    expect(tokens.size).toBe(200);
    for (const t of tokens) expect(t).toMatch(BOOTSTRAP_TOKEN_PATTERN);
  });
});
