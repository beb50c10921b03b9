import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnknownGuestError, fileResolver, loadOrCreateHostKey } from '../../src/ssh/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'labvirt-keys-test-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('host key and guest address map', () => {
  it('gives every concurrent caller the same new key', async () => {
    // Many rounds: a caller that read the winner's file between its creation
    // and its content once saw an empty file and failed (EEXIST).
    for (let round = 0; round < 30; round++) {
      const file = join(dir, `race-${round}`, 'key');
      const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateHostKey(file)));
      expect(new Set(keys.map((k) => k.fingerprint)).size).toBe(1);
      expect(keys[0]?.fingerprint).toMatch(/^SHA256:/);
    }
  });

  it('refuses a secret: spec without a store, and a file that holds no key', async () => {
    await expect(loadOrCreateHostKey('secret:labvirt/gw')).rejects.toThrow(/store/);
    const bad = join(dir, 'bad');
    await writeFile(bad, 'not a key');
    await expect(loadOrCreateHostKey(bad)).rejects.toThrow(/usable/);
  });

  it('reads the sim guest map and follows changes to it', async () => {
    const file = join(dir, 'guests.json');
    await writeFile(file, JSON.stringify({ '10.244.0.5:22': '127.0.0.1:40001' }));
    const resolve = fileResolver(file);
    expect(resolve('10.244.0.5', 22)).toEqual({ host: '127.0.0.1', port: 40001 });
    expect(() => resolve('10.244.0.6', 22)).toThrow(UnknownGuestError);
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(file, JSON.stringify({ '10.244.0.6:22': '127.0.0.1:40002' }));
    expect(resolve('10.244.0.6', 22)).toEqual({ host: '127.0.0.1', port: 40002 });
    expect(() => fileResolver(join(dir, 'missing.json'))('10.0.0.1', 22)).toThrow(/unreadable/);
  });
});
