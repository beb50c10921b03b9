import { X509Certificate } from 'node:crypto';
import {
  caCertHash,
  generateBootstrapToken,
  generateCa,
  issueCertificate,
  type KeyPairPem,
} from '../pki/index.js';
import { generateKeyPair } from '../ssh/index.js';
import type { HostCluster } from './client.js';
import { ENV_PKI_SECRET, LEGACY_PKI_SECRETS, type NodeName } from './names.js';

/** An OpenSSH key pair: the private key (PEM) and the public line (`ssh-ed25519 AAAA…`). */
export interface SshKeyPair {
  privateKey: string;
  publicKey: string;
}

const ALL_NODES: readonly NodeName[] = ['control-plane', 'worker-1', 'worker-2'];

/**
 * What an env's nodes share before boot: its CA and kubeadm bootstrap token,
 * and its SSH identity — the key labvirt logs in with (trusted by this env's
 * VMs only) and each node's host key (given to the guest by cloud-init, so
 * labvirt knows it before the guest ever answers).
 */
export interface EnvSecrets {
  ca: KeyPairPem;
  /** kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`. */
  bootstrapToken: string;
  /** `sha256:<hex>` of the CA's public key, for `--discovery-token-ca-cert-hash`. */
  caHash: string;
  /** This env's orchestrator key: `labvirt` (and the gateway's hop as `student`) in this env only. */
  sshKey: SshKeyPair;
  /**
   * labvirt's client certificate for the NodePort sync's watch of the
   * student cluster (syncClientCertificate), issued with the CA so that a
   * claim does not sign one. Absent in envs made before it was.
   */
  syncClient?: KeyPairPem;
  /** Each node's SSH host key (all three are made, whatever the flavor). */
  hostKeys: Record<NodeName, SshKeyPair>;
  /**
   * The `student` user's key between this env's nodes (`ssh worker-1` from
   * the control plane): its private half in student's ~/.ssh on every node,
   * its public half in student's authorized_keys there. Trusted nowhere else.
   */
  studentKey: SshKeyPair;
}

/** How long the sync's certificate issued with an env lasts: longer than any env waits warm. */
const SYNC_CLIENT_DAYS = 90;

/**
 * The certificate the NodePort sync watches a student cluster with:
 * `system:masters`, because a student may break RBAC on purpose and the
 * watch must keep working. Whoever holds the env's CA key (the same Secret)
 * could issue it anyway.
 */
export function syncClientCertificate(ca: KeyPairPem, days: number): Promise<KeyPairPem> {
  return issueCertificate(ca, {
    commonName: 'labvirt:nodeport-sync',
    organization: 'system:masters',
    usage: 'client',
    algorithm: 'ecdsa',
    days,
  });
}

/** Whether a certificate is still valid `forMs` from now (false when unreadable). */
export function validFor(cert: KeyPairPem, forMs: number): boolean {
  try {
    return Date.parse(new X509Certificate(cert.certPem).validTo) > Date.now() + forMs;
  } catch {
    return false;
  }
}

function sshKeyPair(): SshKeyPair {
  const pair = generateKeyPair();
  return { privateKey: pair.private, publicKey: pair.public.trim() };
}

export async function generateEnvSecrets(): Promise<EnvSecrets> {
  const ca = await generateCa({ commonName: 'kubernetes' });
  return {
    ca,
    bootstrapToken: generateBootstrapToken(),
    caHash: caCertHash(ca.certPem),
    sshKey: sshKeyPair(),
    syncClient: await syncClientCertificate(ca, SYNC_CLIENT_DAYS),
    hostKeys: {
      'control-plane': sshKeyPair(),
      'worker-1': sshKeyPair(),
      'worker-2': sshKeyPair(),
    },
    studentKey: sshKeyPair(),
  };
}

/** The PKI Secret's data (base64 values), as renderEnvironment writes it. */
export function envSecretsData(secrets: EnvSecrets): Record<string, string> {
  const b64 = (v: string) => Buffer.from(v, 'utf8').toString('base64');
  const data: Record<string, string> = {
    'ca.crt': b64(secrets.ca.certPem),
    'ca.key': b64(secrets.ca.keyPem),
    token: b64(secrets.bootstrapToken),
    'ssh.key': b64(secrets.sshKey.privateKey),
    'ssh.pub': b64(secrets.sshKey.publicKey),
    'student.key': b64(secrets.studentKey.privateKey),
    'student.pub': b64(secrets.studentKey.publicKey),
  };
  if (secrets.syncClient) {
    data['sync.crt'] = b64(secrets.syncClient.certPem);
    data['sync.key'] = b64(secrets.syncClient.keyPem);
  }
  for (const node of ALL_NODES) {
    data[`host-${node}.key`] = b64(secrets.hostKeys[node].privateKey);
    data[`host-${node}.pub`] = b64(secrets.hostKeys[node].publicKey);
  }
  return data;
}

/** Thrown when an env's PKI Secret lacks its SSH identity (made by a labvirt before per-env keys). */
export class EnvIdentityMissingError extends Error {
  constructor(namespace: string) {
    super(
      `env ${namespace} has no SSH identity in its Secret ${ENV_PKI_SECRET} (made by an older labvirt): tear it down and let the pool make a new one`,
    );
    this.name = 'EnvIdentityMissingError';
  }
}

/**
 * The env's secrets as an earlier provisioning attempt stored them, so a
 * retry renders every VM with the same CA, token and keys. Undefined when
 * there is no PKI Secret yet.
 */
export async function readEnvSecrets(
  cluster: HostCluster,
  namespace: string,
): Promise<EnvSecrets | undefined> {
  const hasPki = (d: Record<string, string> | undefined): d is Record<string, string> =>
    Boolean(d?.['ca.crt'] && d['ca.key'] && d['token']);
  const secret = await cluster.readSecret(namespace, ENV_PKI_SECRET);
  let d = secret?.data;
  if (!secret) {
    // An env made by an earlier labvirt keeps its PKI where that one put it
    // (LEGACY_PKI_SECRETS), still read so that its envs stay usable: in the
    // control plane's own cloud-init Secret or, before that, in one of its
    // own. A new env's first attempt finds neither.
    const [controlPlaneSecret, ownSecret] = LEGACY_PKI_SECRETS;
    const older = await cluster.readSecret(namespace, controlPlaneSecret);
    d = older?.data;
    if (older && !hasPki(d)) d = (await cluster.readSecret(namespace, ownSecret))?.data;
  }
  if (!hasPki(d)) return undefined;
  const dec = (name: string) => {
    const v = d[name];
    if (!v) throw new EnvIdentityMissingError(namespace);
    return Buffer.from(v, 'base64').toString('utf8');
  };
  const ca = { certPem: dec('ca.crt'), keyPem: dec('ca.key') };
  const pair = (prefix: string) => ({
    privateKey: dec(`${prefix}.key`),
    publicKey: dec(`${prefix}.pub`),
  });
  return {
    ca,
    bootstrapToken: dec('token'),
    // Only rendering a VM again needs it; a claim (the SSH identity, the
    // NodePort sync's CA) reads this Secret too, and would parse the CA's
    // certificate for nothing.
    get caHash() {
      return caCertHash(ca.certPem);
    },
    sshKey: pair('ssh'),
    ...(d['sync.crt'] && d['sync.key']
      ? { syncClient: { certPem: dec('sync.crt'), keyPem: dec('sync.key') } }
      : {}),
    hostKeys: {
      'control-plane': pair('host-control-plane'),
      'worker-1': pair('host-worker-1'),
      'worker-2': pair('host-worker-2'),
    },
    // An env made before student keys existed has none: a retry renders its
    // VMs with a new one (the student's ssh between nodes is all it serves).
    studentKey: d['student.key'] && d['student.pub'] ? pair('student') : sshKeyPair(),
  };
}

/** What the executor, the gateway and the web bridge need of an env to reach its guests. */
export interface EnvSshIdentityView {
  privateKey: string;
  publicKey: string;
  hostKeys: Record<NodeName, string>;
}

/**
 * Each env's SSH identity, read from its PKI Secret once and kept in memory
 * (it never changes in an env's life). Bounded: the oldest entries go first.
 */
export class EnvIdentities {
  private readonly known = new Map<string, Promise<EnvSshIdentityView>>();

  constructor(
    private readonly cluster: HostCluster,
    private readonly namespaceOf: (envId: string) => string,
    private readonly max = 5000,
  ) {}

  get(envId: string): Promise<EnvSshIdentityView> {
    let entry = this.known.get(envId);
    if (!entry) {
      entry = this.read(envId);
      this.known.set(envId, entry);
      // A failed read (API down, env gone) is asked again next time.
      entry.catch(() => {
        if (this.known.get(envId) === entry) this.known.delete(envId);
      });
      if (this.known.size > this.max) {
        const oldest = this.known.keys().next().value;
        if (oldest !== undefined) this.known.delete(oldest);
      }
    }
    return entry;
  }

  forget(envId: string): void {
    this.known.delete(envId);
  }

  private async read(envId: string): Promise<EnvSshIdentityView> {
    const namespace = this.namespaceOf(envId);
    const secrets = await readEnvSecrets(this.cluster, namespace);
    if (!secrets) throw new EnvIdentityMissingError(namespace);
    return {
      privateKey: secrets.sshKey.privateKey,
      publicKey: secrets.sshKey.publicKey,
      hostKeys: {
        'control-plane': secrets.hostKeys['control-plane'].publicKey,
        'worker-1': secrets.hostKeys['worker-1'].publicKey,
        'worker-2': secrets.hostKeys['worker-2'].publicKey,
      },
    };
  }
}
