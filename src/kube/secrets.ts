import { caCertHash, generateBootstrapToken, generateCa, type KeyPairPem } from '../pki/index.js';
import type { HostCluster } from './client.js';
import { ENV_PKI_SECRET } from './names.js';

/** What the student cluster's nodes share before boot: its CA and a kubeadm bootstrap token. */
export interface EnvSecrets {
  ca: KeyPairPem;
  /** kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`. */
  bootstrapToken: string;
  /** `sha256:<hex>` of the CA's public key, for `--discovery-token-ca-cert-hash`. */
  caHash: string;
}

export async function generateEnvSecrets(): Promise<EnvSecrets> {
  const ca = await generateCa({ commonName: 'kubernetes' });
  return { ca, bootstrapToken: generateBootstrapToken(), caHash: caCertHash(ca.certPem) };
}

/**
 * The env's secrets as an earlier provisioning attempt stored them, so a
 * retry renders every VM with the same CA and token.
 */
export async function readEnvSecrets(
  cluster: HostCluster,
  namespace: string,
): Promise<EnvSecrets | undefined> {
  const s = await cluster.readSecret(namespace, ENV_PKI_SECRET);
  const d = s?.data;
  if (!d?.['ca.crt'] || !d['ca.key'] || !d['token']) return undefined;
  const dec = (v: string) => Buffer.from(v, 'base64').toString('utf8');
  const ca = { certPem: dec(d['ca.crt']), keyPem: dec(d['ca.key']) };
  return { ca, bootstrapToken: dec(d['token']), caHash: caCertHash(ca.certPem) };
}
