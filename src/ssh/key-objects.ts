import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import ssh2, { type ParsedKey } from 'ssh2';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { utils } = ssh2;

/** The hash ssh2 signs with when the protocol names none, per key type. */
const DEFAULT_HASH: Record<string, string | null> = {
  'ssh-ed25519': null,
  'ecdsa-sha2-nistp256': 'sha256',
  'ecdsa-sha2-nistp384': 'sha384',
  'ecdsa-sha2-nistp521': 'sha512',
  'ssh-rsa': 'sha1',
};

/**
 * A private key parsed once, whose signatures use a key object made once.
 *
 * ssh2 keeps a parsed key as PEM text and passes that text to
 * `crypto.sign` at every signature, so OpenSSL 3 decodes the key again each
 * time — several times the cost of the ed25519 signature itself (figures in
 * docs/ssh.md, "Tuning"). The gateway signs at every student login (its host
 * key) and at every hop to a guest (its client key), so it hands ssh2 keys
 * prepared here: the same key, the same signatures, without the decoding.
 * ssh2 accepts a parsed key wherever it takes one (`hostKeys: [{ key }]`,
 * an `authHandler`'s `key`).
 */
export function preparedSigningKey(pem: string | Buffer, where: string): ParsedKey {
  const parsed = utils.parseKey(pem);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey())
    throw new Error(`${where} does not hold a usable private key`);
  const defaultHash = DEFAULT_HASH[key.type];
  // A type not listed keeps ssh2's own signing.
  if (defaultHash === undefined) return key;
  const keyObject = createPrivateKey(key.getPrivatePEM());
  key.sign = (data: Buffer, algo?: string): Buffer | Error => {
    try {
      return sign(algo ?? defaultHash, data, keyObject);
    } catch (err) {
      return err as Error;
    }
  };
  return key;
}

const publicKeyObjects = new WeakMap<ParsedKey, KeyObject>();

/**
 * Checks `signature` over `data` by public key `key`, as ssh2's
 * `key.verify` does, with the key decoded once per parsed key instead of at
 * every check (259 vs 113 µs per ed25519 check, docs/ssh.md "Tuning").
 * The signature is in the form ssh2's server hands to an `authentication`
 * handler (already converted from SSH's wire form).
 */
export function verifySignature(
  key: ParsedKey,
  data: Buffer,
  signature: Buffer,
  hashAlgo?: string,
): boolean {
  const defaultHash = DEFAULT_HASH[key.type];
  if (defaultHash === undefined) return key.verify(data, signature, hashAlgo as never) === true;
  let keyObject = publicKeyObjects.get(key);
  if (!keyObject) {
    keyObject = createPublicKey(key.getPublicPEM());
    publicKeyObjects.set(key, keyObject);
  }
  try {
    return verify(hashAlgo ?? defaultHash, data, keyObject, signature);
  } catch {
    return false;
  }
}
