import { describe, expect, it } from 'vitest';
import ssh2 from 'ssh2';
import { HostKeyMismatchError, HostKeyPins } from '../../src/ssh/hostkeys.js';
import { generateKeyPair } from '../../src/ssh/keys.js';

const { utils } = ssh2;

/** What a guest shows on the wire for its host key. */
function offered(publicLine: string): Buffer {
  const key = utils.parseKey(publicLine);
  if (key instanceof Error || Array.isArray(key)) throw new Error('bad key');
  return key.getPublicSSH();
}

describe('host key pins against the key an env names', () => {
  const node = generateKeyPair().public.trim();
  const other = generateKeyPair().public.trim();

  it('accepts exactly the named key, with or without a comment', () => {
    const pins = new HostKeyPins();
    expect(pins.check('env-a', 'worker-1', offered(node), node)).toBeUndefined();
    expect(pins.check('env-a', 'worker-1', offered(node), `${node} worker-1`)).toBeUndefined();
  });

  it('refuses another key and names both fingerprints', () => {
    const err = new HostKeyPins().check('env-a', 'worker-1', offered(other), node, '10.0.0.7');
    expect(err).toBeInstanceOf(HostKeyMismatchError);
    expect(err?.message).toMatch(/worker-1 \(10\.0\.0\.7\) in env env-a changed: expected SHA256:/);
    expect(err?.pinned).not.toBe(err?.offered);
  });

  it('refuses everything when the named key is unreadable', () => {
    const [type, blob] = node.split(' ') as [string, string];
    const unreadable = [
      'garbage',
      `${type}`,
      `${type} !!!notbase64`,
      // The blob names another type than the line does.
      `ecdsa-sha2-nistp256 ${blob}`,
      // Cut short: the type's length runs past the end.
      `${type} ${Buffer.from([0, 0, 0, 40, 115, 115, 104]).toString('base64')}`,
    ];
    for (const line of unreadable) {
      const err = new HostKeyPins().check('env-a', 'control-plane', offered(node), line);
      expect(err, line).toBeInstanceOf(HostKeyMismatchError);
      expect(err?.pinned, line).toBe('an unreadable key');
    }
  });
});
