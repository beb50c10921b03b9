import ssh2, { type ParsedKey } from 'ssh2';
import { generateKeyPair } from '../../src/ssh/keys.js';
import { describe, expect, it } from 'vitest';
import { preparedSigningKey, verifySignature } from '../../src/ssh/key-objects.js';

const { utils } = ssh2;
const data = Buffer.from('exchange hash or userauth blob');

function parsed(text: string): ParsedKey {
  const key = utils.parseKey(text);
  if (key instanceof Error || Array.isArray(key)) throw new Error('test key did not parse');
  return key;
}

// The gateway's keys are ed25519; an operator may mount another type as its host key.
const pairs = [
  { type: 'ssh-ed25519', pair: generateKeyPair(), algos: [undefined] },
  {
    type: 'ecdsa-sha2-nistp256',
    pair: utils.generateKeyPairSync('ecdsa', { bits: 256 }),
    algos: [undefined],
  },
  {
    type: 'ssh-rsa',
    pair: utils.generateKeyPairSync('rsa', { bits: 2048 }),
    // ssh-rsa (SHA-1) and the rsa-sha2-256/512 signatures ssh2 asks for
    algos: [undefined, 'sha256', 'sha512'],
  },
];

describe('keys prepared once for signing and checking', () => {
  for (const { type, pair, algos } of pairs) {
    it(`signs exactly as ssh2 does, and checks what ssh2 checks (${type})`, () => {
      const prepared = preparedSigningKey(pair.private, 'the test key');
      const plain = parsed(pair.private);
      const pub = parsed(pair.public);
      expect(prepared.type).toBe(type);
      expect(prepared.getPublicSSH().equals(pub.getPublicSSH())).toBe(true);
      for (const algo of algos) {
        const signature = prepared.sign(data, algo);
        if (signature instanceof Error) throw signature;
        // ssh2's own check of the prepared key's signature, and ours of ssh2's.
        expect(pub.verify(data, signature, algo as never)).toBe(true);
        const ssh2Signature = plain.sign(data, algo);
        if (ssh2Signature instanceof Error) throw ssh2Signature;
        expect(verifySignature(pub, data, ssh2Signature, algo)).toBe(true);
        // ed25519 and RSA signatures are deterministic: byte for byte the same.
        if (type !== 'ecdsa-sha2-nistp256') expect(signature.equals(ssh2Signature)).toBe(true);
        // A changed message, or another key, does not pass.
        expect(verifySignature(pub, Buffer.from('something else'), signature, algo)).toBe(false);
        const other = parsed(generateKeyPair().public);
        expect(verifySignature(other, data, signature, algo)).toBe(false);
      }
    });
  }

  it('says which key is unusable', () => {
    expect(() => preparedSigningKey('not a key', 'the gateway host key')).toThrow(
      /the gateway host key does not hold a usable private key/,
    );
    expect(() => preparedSigningKey(pairs[0]!.pair.public, 'the client key')).toThrow(
      /the client key does not hold a usable private key/,
    );
  });

  it('refuses a garbled signature without throwing', () => {
    const pub = parsed(pairs[0]!.pair.public);
    expect(verifySignature(pub, data, Buffer.from('short'))).toBe(false);
  });
});
