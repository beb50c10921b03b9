import type { Algorithms } from 'ssh2';

/**
 * Key exchange for labvirt's own connections to guests (the executor, the
 * gateway's hop, the web terminal bridge's), cheapest first.
 *
 * ssh2's curve25519 makes an OpenSSL key pair, exports its public half as
 * DER and imports the guest's from DER at every handshake: with OpenSSL 3
 * the encoding and decoding cost several times the curve arithmetic, about
 * 1 ms of CPU per handshake against P-256 through `createECDH`, which works
 * on raw points (docs/ssh.md, "Tuning"). Both give 128-bit security;
 * ecdh-sha2-nistp256 is in OpenSSH's default lists (Ubuntu 22.04's 8.9 and
 * later) and in ssh2's, so every guest offers it; OpenSSH prefers
 * curve25519 for its simpler constant-time implementations, which OpenSSL's
 * P-256 code (constant-time on x86-64 and arm64) makes no difference for
 * here. curve25519 stays offered after it, so a guest whose sshd allows
 * curve25519 alone still connects. The client's order decides (RFC 4253
 * 7.1), so students' own connections to the gateway keep their client's
 * choice.
 */
export const GUEST_KEX = [
  'ecdh-sha2-nistp256',
  'curve25519-sha256',
  'curve25519-sha256@libssh.org',
] as const;

/**
 * What labvirt offers a guest. With the node's pinned host key known, only
 * that key's type is asked for, so a guest with other host keys as well
 * cannot answer with one labvirt does not know; without one (first contact
 * in low-level uses) ssh2's default host key list.
 */
export function guestAlgorithms(expectedHostKey: string | undefined): Algorithms {
  return {
    kex: [...GUEST_KEX],
    ...(expectedHostKey ? { serverHostKey: [expectedHostKey.split(' ')[0] as never] } : {}),
  };
}
