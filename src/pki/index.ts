import { createHash, randomInt, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

// @peculiar/x509 wants the DOM Crypto type; Node's webcrypto is the same API.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** A certificate and its private key, both PEM (key in PKCS#8). */
export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export type KeyAlgorithm = 'rsa' | 'ecdsa';

const ALGORITHMS = {
  // kubeadm's own default: RSA 2048 with SHA-256.
  rsa: {
    name: 'RSASSA-PKCS1-v1_5',
    hash: 'SHA-256',
    publicExponent: new Uint8Array([1, 0, 1]),
    modulusLength: 2048,
  },
  ecdsa: { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
} as const;

async function generateKeys(algorithm: KeyAlgorithm): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHMS[algorithm], true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const body = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
}

function serial(): string {
  // Positive 64-bit serial: a leading byte below 0x80 keeps the DER integer positive.
  return (
    randomInt(1, 0x7f).toString(16).padStart(2, '0') +
    Array.from({ length: 7 }, () => randomInt(0, 256).toString(16).padStart(2, '0')).join('')
  );
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  // Back-date a little: clocks of freshly booted VMs drift.
  const notBefore = new Date(Date.now() - 5 * 60_000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) };
}

export interface CaOptions {
  commonName: string;
  days?: number;
  algorithm?: KeyAlgorithm;
}

/** A self-signed certificate authority (e.g. the student cluster's `kubernetes` CA). */
export async function generateCa(options: CaOptions): Promise<KeyPairPem> {
  const algorithm = options.algorithm ?? 'rsa';
  const keys = await generateKeys(algorithm);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${options.commonName}`,
    ...validity(options.days ?? 3650),
    keys,
    signingAlgorithm: ALGORITHMS[algorithm],
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign |
          x509.KeyUsageFlags.cRLSign |
          x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportKeyPem(keys.privateKey) };
}

export interface LeafOptions {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Subject organisation, e.g. `system:masters` for a Kubernetes admin client cert. */
  organization?: string;
  usage: 'server' | 'client';
  days?: number;
  algorithm?: KeyAlgorithm;
}

/** A leaf certificate signed by `ca` (server for TLS endpoints, client for mTLS). */
export async function issueCertificate(ca: KeyPairPem, options: LeafOptions): Promise<KeyPairPem> {
  const algorithm = options.algorithm ?? 'ecdsa';
  const caCert = new x509.X509Certificate(ca.certPem);
  const caAlgorithm = caCert.publicKey.algorithm.name === 'ECDSA' ? 'ecdsa' : 'rsa';
  const caKey = await webcrypto.subtle.importKey(
    'pkcs8',
    pemToDer(ca.keyPem),
    ALGORITHMS[caAlgorithm],
    false,
    ['sign'],
  );
  const keys = await generateKeys(algorithm);
  const altNames: x509.JsonGeneralName[] = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const subject =
    `CN=${options.commonName}` + (options.organization ? `, O=${options.organization}` : '');
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: caCert.subject,
    ...validity(options.days ?? 365),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ALGORITHMS[caAlgorithm],
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(
        [
          options.usage === 'server'
            ? x509.ExtendedKeyUsage.serverAuth
            : x509.ExtendedKeyUsage.clientAuth,
        ],
        false,
      ),
      ...(altNames.length > 0 ? [new x509.SubjectAlternativeNameExtension(altNames)] : []),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * The value kubeadm pins with `--discovery-token-ca-cert-hash`: `sha256:` and
 * the hex SHA-256 of the CA's DER-encoded SubjectPublicKeyInfo.
 */
export function caCertHash(caCertPem: string): string {
  const spki = new X509Certificate(caCertPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

const TOKEN_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomToken(length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += TOKEN_ALPHABET[randomInt(0, TOKEN_ALPHABET.length)];
  return out;
}

/** A kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`. */
export function generateBootstrapToken(): string {
  return `${randomToken(6)}.${randomToken(16)}`;
}

export const BOOTSTRAP_TOKEN_PATTERN = /^[a-z0-9]{6}\.[a-z0-9]{16}$/;

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}
