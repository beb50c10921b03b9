import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Operator passwords are stored as scrypt hashes (node:crypto):
 * `scrypt$<N>$<r>$<p>$<salt, base64url>$<key, base64url>`, made by
 * `labvirt web hash-password`. The parameters travel with the hash, so they
 * can be raised later without breaking hashes made before.
 */
export const PASSWORD_HASH =
  /^scrypt\$(\d{4,7})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9_-]{16,})\$([A-Za-z0-9_-]{32,})$/;

const DEFAULT = { N: 1 << 15, r: 8, p: 1 };
const KEY_BYTES = 32;

function derive(password: string, salt: Buffer, o: { N: number; r: number; p: number }) {
  // scrypt needs 128·N·r bytes; node's default cap (32 MiB) is just below N=2^15, r=8.
  const options: ScryptOptions = { N: o.N, r: o.r, p: o.p, maxmem: 256 * o.N * o.r };
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, KEY_BYTES, options, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

export async function hashPassword(password: string): Promise<string> {
  if (password.length < 12) throw new Error('an operator password needs at least 12 characters');
  const salt = randomBytes(16);
  const key = await derive(password, salt, DEFAULT);
  return [
    'scrypt',
    DEFAULT.N,
    DEFAULT.r,
    DEFAULT.p,
    salt.toString('base64url'),
    key.toString('base64url'),
  ].join('$');
}

interface Parsed {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parse(hash: string): Parsed {
  const m = PASSWORD_HASH.exec(hash);
  const N = Number(m?.[1]);
  if (!m || N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0) {
    throw new Error('not a password hash made by `labvirt web hash-password`');
  }
  return {
    N,
    r: Number(m[2]),
    p: Number(m[3]),
    salt: Buffer.from(m[4]!, 'base64url'),
    key: Buffer.from(m[5]!, 'base64url'),
  };
}

export interface OperatorAccount {
  username: string;
  passwordHash: string;
}

/** Checks operator usernames and passwords from config (`web.operators`). */
export class OperatorLogins {
  private readonly accounts = new Map<string, Parsed>();
  /** Compared against when the user is unknown: the answer takes as long either way. */
  private readonly decoy: Parsed;

  constructor(accounts: readonly OperatorAccount[]) {
    for (const a of accounts) this.accounts.set(a.username, parse(a.passwordHash));
    const first = this.accounts.values().next().value;
    this.decoy = {
      N: first?.N ?? DEFAULT.N,
      r: first?.r ?? DEFAULT.r,
      p: first?.p ?? DEFAULT.p,
      salt: randomBytes(16),
      key: randomBytes(KEY_BYTES),
    };
  }

  get size(): number {
    return this.accounts.size;
  }

  /** The username when the password is right; undefined, in the same time, otherwise. */
  async verify(username: string, password: string): Promise<string | undefined> {
    const account = this.accounts.get(username);
    const stored = account ?? this.decoy;
    const key = await derive(password, stored.salt, stored);
    const same = key.length === stored.key.length && timingSafeEqual(key, stored.key);
    return account && same ? username : undefined;
  }
}
