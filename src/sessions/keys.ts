import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import { generateKeyPair } from '../ssh/index.js';
import { LabvirtError } from './types.js';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries its exports.
const { utils } = ssh2;

export interface SessionKeyPair {
  /** OpenSSH private key, handed to the student once. */
  privateKey: string;
  /** `ssh-ed25519 AAAA… labvirt-session-<id>` */
  publicKey: string;
}

/** A fresh ed25519 key pair for one session (the student did not register a key). */
export function generateSessionKeyPair(sessionId: string): SessionKeyPair {
  // ssh2 now and then makes an ed25519 key it cannot parse itself; this retries.
  const pair = generateKeyPair();
  return {
    privateKey: pair.private,
    publicKey: `${pair.public.trim()} labvirt-session-${sessionId}`,
  };
}

const MAX_PUBLIC_KEY_LENGTH = 8192;
const ACCEPTED_KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
]);

/**
 * Checks a student-supplied public key and returns it in canonical one-line
 * form (`type base64 [comment]`, comment stripped of anything but safe
 * characters). Refuses private keys, several keys, options prefixes and junk.
 */
export function normalizePublicKey(input: string): string {
  const text = input.trim();
  if (text.length === 0 || text.length > MAX_PUBLIC_KEY_LENGTH || /[\r\n]/.test(text)) {
    throw invalid('give exactly one public key on one line, as in ~/.ssh/id_ed25519.pub');
  }
  const parsed = utils.parseKey(text);
  if (parsed instanceof Error || Array.isArray(parsed)) {
    throw invalid(
      'this is not an OpenSSH public key (it should start with ssh-ed25519 or ssh-rsa)',
    );
  }
  if (parsed.isPrivateKey()) {
    throw invalid('this is a PRIVATE key: never share it; send the .pub file instead');
  }
  if (!ACCEPTED_KEY_TYPES.has(parsed.type)) {
    throw invalid(`key type ${parsed.type} is not accepted; use ssh-ed25519`);
  }
  return `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;
}

/** The `SHA256:…` fingerprint of an OpenSSH public key line, as `ssh-keygen -lf` prints it. */
export function publicKeyFingerprint(publicKey: string): string {
  const blob = Buffer.from(publicKey.trim().split(/\s+/)[1] ?? '', 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function invalid(message: string): LabvirtError {
  return new LabvirtError('INVALID_PUBLIC_KEY', message);
}
