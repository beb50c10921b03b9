import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { OperatorLogins } from '../../src/web/operators.js';

const PASSWORD = 'a long enough operator password';

/** `labvirt web hash-password` with the password piped on stdin, as in docs/web.md. */
function hashWithCli(password: string) {
  const bin = fileURLToPath(new URL('../../bin/labvirt.js', import.meta.url));
  return spawnSync(process.execPath, [bin, 'web', 'hash-password'], {
    input: `${password}\n`,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('operator passwords', () => {
  it('labvirt web hash-password prints a scrypt hash that verifies that password only', async () => {
    const r = hashWithCli(PASSWORD);
    expect(r.status).toBe(0);
    const hash = r.stdout.trim();
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(hash).not.toContain(PASSWORD);
    // A fresh salt each time.
    expect(hashWithCli(PASSWORD).stdout.trim()).not.toBe(hash);

    const logins = new OperatorLogins([{ username: 'olga', passwordHash: hash }]);
    expect(await logins.verify('olga', PASSWORD)).toBe('olga');
    expect(await logins.verify('olga', `${PASSWORD} `)).toBeUndefined();
    expect(await logins.verify('oleg', PASSWORD)).toBeUndefined();
  }, 60_000);

  it('refuses a short password and a malformed hash with a clear message', () => {
    const r = hashWithCli('short');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('at least 12 characters');
    expect(r.stdout).toBe('');
    expect(
      () => new OperatorLogins([{ username: 'olga', passwordHash: 'scrypt$3$8$1$abc$def' }]),
    ).toThrow(/labvirt web hash-password/);
  }, 60_000);

  it('the configuration refuses a plain password and a username twice', () => {
    const withOperators = (operators: unknown) =>
      loadConfig({ env: {}, overrides: { web: { operators } } });
    expect(() => withOperators([{ username: 'olga', passwordHash: PASSWORD }])).toThrow(
      /hash-password/,
    );
    const hash = hashWithCli(PASSWORD).stdout.trim();
    expect(() =>
      withOperators([
        { username: 'olga', passwordHash: hash },
        { username: 'olga', passwordHash: hash },
      ]),
    ).toThrow(/each operator username once/);
    expect(withOperators([{ username: 'olga', passwordHash: hash }]).web.operators).toHaveLength(1);
  }, 60_000);
});
