import type { HostCluster } from '../kube/client.js';
import { fileKeyStore, type KeyStore } from '../ssh/index.js';

const SECRET_SPEC = /^secret:([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/;

/**
 * Where a long-lived private key is kept. `secret:<namespace>/<name>` keeps it
 * in a Secret on the host cluster (key `ssh-privatekey`, type
 * kubernetes.io/ssh-auth), so every replica and every restart uses the same
 * one; anything else is a file path, created with mode 0600.
 */
export function keyStoreFor(spec: string, cluster: HostCluster): KeyStore {
  const m = SECRET_SPEC.exec(spec);
  if (!m) return fileKeyStore(spec);
  const namespace = m[1]!;
  const name = m[2]!;
  return {
    describe: () => `Secret ${namespace}/${name}`,
    async get() {
      const secret = await cluster.readSecret(namespace, name);
      const data = secret?.data?.['ssh-privatekey'];
      return data ? Buffer.from(data, 'base64').toString('utf8') : undefined;
    },
    async put(privateKey) {
      await cluster.createSecret(namespace, {
        metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'labvirt' } },
        type: 'kubernetes.io/ssh-auth',
        data: { 'ssh-privatekey': Buffer.from(privateKey).toString('base64') },
      });
    },
  };
}
