import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import ssh2, { type ParsedKey } from 'ssh2';
import { verifySignature } from './key-objects.js';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { utils } = ssh2;

/** Where a long-lived private key lives (a file, or a Secret through the app's store). */
export interface KeyStore {
  describe?(): string;
  get(): Promise<string | undefined>;
  put(privateKey: string): Promise<void>;
}

export interface LoadedKey {
  privateKey: string;
  /** `ssh-ed25519 AAAA…` */
  publicKey: string;
  /** `SHA256:…` as OpenSSH prints it. */
  fingerprint: string;
}

/**
 * A fresh ed25519 key pair in OpenSSH format. ssh2 1.17's generator now and
 * then (about 1 in 200) emits a key whose public half lost a leading zero byte,
 * which ssh2 itself then refuses to parse; such keys are thrown away.
 */
export function generateKeyPair(): { private: string; public: string } {
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519');
    const priv = utils.parseKey(pair.private);
    const pub = utils.parseKey(pair.public);
    if (!(priv instanceof Error) && !(pub instanceof Error)) return pair;
  }
}

/** A file store: created 0600 in a 0700 directory, never overwritten. */
export function fileKeyStore(path: string): KeyStore {
  return {
    describe: () => path,
    async get() {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
    async put(privateKey) {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      // Written aside, then linked into place: the key appears whole or not at
      // all (a file created in place is empty for a moment, and a racing
      // reader took that for "no key"); link fails with EEXIST like `wx`.
      const aside = `${path}.${process.pid}.${randomBytes(6).toString('hex')}`;
      await writeFile(aside, privateKey, { mode: 0o600, flag: 'wx' });
      try {
        await link(aside, path);
      } finally {
        await rm(aside, { force: true });
      }
    },
  };
}

/**
 * Loads an ed25519 private key or creates and stores one. `spec` is a file
 * path or a store (the app backs `secret:<ns>/<name>` with a Secret). When two
 * processes race, the loser's `put` fails and it reads the winner's key.
 */
export async function loadOrCreateHostKey(spec: string | KeyStore): Promise<LoadedKey> {
  if (typeof spec === 'string' && spec.startsWith('secret:')) {
    throw new Error(`${spec}: pass a store backed by the Secret, not the spec string`);
  }
  const store = typeof spec === 'string' ? fileKeyStore(spec) : spec;
  const where = store.describe?.() ?? 'key store';
  let pem = await store.get();
  if (!pem) {
    const fresh = generateKeyPair().private;
    try {
      await store.put(fresh);
      pem = fresh;
    } catch (err) {
      pem = await store.get();
      if (!pem) throw err;
    }
  }
  const parsed = utils.parseKey(pem);
  if (parsed instanceof Error || !parsed.isPrivateKey()) {
    throw new Error(`${where} does not hold a usable private key`);
  }
  return { privateKey: pem, publicKey: publicLine(parsed), fingerprint: fingerprint(parsed) };
}

/** `type base64` of a parsed key (no comment). */
export function publicLine(key: ParsedKey): string {
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

export function fingerprint(key: ParsedKey | Buffer): string {
  const blob = Buffer.isBuffer(key) ? key : key.getPublicSSH();
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Parses one authorized_keys line (options before the key are skipped).
 * Returns undefined for anything that is not a public key.
 */
export function parseAuthorizedKey(line: string): ParsedKey | undefined {
  const trimmed = line.trim();
  if (!trimmed || trimmed.startsWith('#')) return undefined;
  const at = trimmed.search(/(^|\s)(ssh-|ecdsa-|sk-)/);
  if (at < 0) return undefined;
  const parsed = utils.parseKey(trimmed.slice(at).trim());
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error || key.isPrivateKey()) return undefined;
  return key;
}

/** What a server's publickey auth context carries. */
export interface PublicKeyAttempt {
  key: { algo: string; data: Buffer };
  signature?: Buffer;
  blob?: Buffer;
  hashAlgo?: string;
}

/**
 * The allowed key matching the attempt, if any; when the client already
 * signed, the signature must verify too.
 */
export function matchKey(allowed: ParsedKey[], attempt: PublicKeyAttempt): ParsedKey | undefined {
  const key = allowed.find((k) => k.getPublicSSH().equals(attempt.key.data));
  if (!key) return undefined;
  if (attempt.signature && attempt.blob) {
    if (!verifySignature(key, attempt.blob, attempt.signature, attempt.hashAlgo)) return undefined;
  }
  return key;
}
