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

/**
 * The key blob of a public key line (`<type> <base64 blob>`), or undefined
 * when it is not one. The blob is what a server shows on the wire, so an
 * offered key is compared with it byte for byte; decoding the key itself
 * (ssh2's parseKey builds an OpenSSL key object) cost more than the rest of
 * the check, and it ran at every connection to a guest.
 */
function keyBlob(publicLine: string): Buffer | undefined {
  const [type, base64] = publicLine.trim().split(/\s+/);
  if (!type || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  const blob = Buffer.from(base64, 'base64');
  // The blob starts with its own type: a string of 4 length bytes and the name.
  if (blob.length < 4) return undefined;
  const named = blob.readUInt32BE(0);
  if (4 + named > blob.length || blob.toString('latin1', 4, 4 + named) !== type) return undefined;
  return blob;
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
