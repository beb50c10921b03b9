import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateCa, issueCertificate, type KeyPairPem } from '../../src/pki/index.js';
import { serverCertificateProblem } from '../../src/sync/student.js';

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

  it('refuses no certificate at all', () => {
    expect(serverCertificateProblem(undefined, caKey())).toBe('the API server sent no certificate');
  });
});
