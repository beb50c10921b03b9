import ssh2 from 'ssh2';
import { fingerprint } from './keys.js';

export type NodeName = 'control-plane' | 'worker-1' | 'worker-2';

/**
 * What labvirt knows of one env's SSH before any guest of it boots (kept
 * with the env's PKI, see docs/security.md "Addresses and keys"): the key it
 * logs in with, trusted by this env's guests only, and the host key each
 * node was given by cloud-init.
 */
export interface EnvSshIdentity {
  /** OpenSSH private key for `labvirt` (and the gateway's hop as `student`) in this env only. */
  privateKey: string;
  /** Public half of `privateKey` (`ssh-ed25519 AAAA…`). */
  publicKey: string;
  /** The host key (`ssh-ed25519 AAAA…`) each node must show, whatever its address. */
  hostKeys: Partial<Record<NodeName, string>>;
}

/** Finds an env's identity (the app reads it from the env's PKI Secret). */
export type EnvIdentitySource = (envId: string) => Promise<EnvSshIdentity>;

export class HostKeyMismatchError extends Error {
  readonly code = 'EHOSTKEYMISMATCH';
  constructor(
    readonly envId: string,
    readonly where: string,
    readonly pinned: string,
    readonly offered: string,
  ) {
    super(
      `host key of ${where} in env ${envId} changed: expected ${pinned} (the one labvirt recorded for this node), offered ${offered}; refusing to connect (possible impersonation)`,
    );
    this.name = 'HostKeyMismatchError';
  }
}

/** The key blob of a public key line, or undefined when it is not one. */
function keyBlob(publicLine: string): Buffer | undefined {
  const parsed = ssh2.utils.parseKey(publicLine);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  return !key || key instanceof Error ? undefined : key.getPublicSSH();
}

/**
 * Host keys per env and node — never per address: a forged or recycled IP
 * that leads to another guest meets a key that is not this node's.
 *
 * When the env's identity names the node's key, that key and no other is
 * accepted. Without one (guests labvirt did not render, as in low-level
 * tests), the first key shown is pinned for the env's life.
 */
export class HostKeyPins {
  private readonly learned = new Map<string, Map<string, string>>();

  /** Returns undefined when accepted, or the error to report. */
  check(
    envId: string,
    node: string,
    offered: Buffer,
    expected: string | undefined,
    address?: string,
  ): HostKeyMismatchError | undefined {
    const where = address ? `${node} (${address})` : node;
    if (expected !== undefined) {
      const blob = keyBlob(expected);
      if (blob && blob.equals(offered)) return undefined;
      return new HostKeyMismatchError(
        envId,
        where,
        blob ? fingerprint(blob) : 'an unreadable key',
        fingerprint(offered),
      );
    }
    let env = this.learned.get(envId);
    if (!env) this.learned.set(envId, (env = new Map()));
    const seen = fingerprint(offered);
    const pinned = env.get(node);
    if (pinned === undefined) {
      env.set(node, seen);
      return undefined;
    }
    return pinned === seen ? undefined : new HostKeyMismatchError(envId, where, pinned, seen);
  }

  forget(envId: string): void {
    this.learned.delete(envId);
  }
}
