import { describe, expect, it } from 'vitest';
import { AdminCookies, SessionCookies } from '../../src/web/session-cookie.js';
import { CookieSigner } from '../../src/web/signing.js';

const header = (setCookie: string) => setCookie.split(';')[0]!;

describe('web cookies', () => {
  const signer = new CookieSigner('an-api-token-of-some-length');
  let now = 1_000_000;
  const cookies = new SessionCookies(signer, () => now);

  it('are HttpOnly, SameSite=Strict, scoped to the session, Secure only over TLS', () => {
    const plain = cookies.issue('s-abcdefghij', 'alice', now + 60_000, false);
    expect(plain).toMatch(/HttpOnly/);
    expect(plain).toMatch(/SameSite=Strict/);
    expect(plain).toMatch(/Path=\/s\/s-abcdefghij/);
    expect(plain).not.toMatch(/Secure/);
    expect(cookies.issue('s-abcdefghij', 'alice', now + 60_000, true)).toMatch(/Secure/);
  });

  it('open only their own session, only until they expire, and not when altered', () => {
    const c = header(cookies.issue('s-abcdefghij', 'alice', now + 60_000, false));
    expect(cookies.read(c, 's-abcdefghij')).toEqual({ student: 'alice' });
    expect(cookies.read(c, 's-klmnopqrst')).toBeUndefined();
    // Another session's id put in the payload with the old signature.
    const [name, value] = c.split('=') as [string, string];
    const [body, mac] = value.split('.') as [string, string];
    const forged = Buffer.from(
      Buffer.from(body, 'base64url').toString().replace('s-abcdefghij', 's-klmnopqrst'),
    ).toString('base64url');
    expect(cookies.read(`${name}=${forged}.${mac}`, 's-klmnopqrst')).toBeUndefined();
    expect(cookies.read(`${name}=garbage`, 's-abcdefghij')).toBeUndefined();
    expect(cookies.read(undefined, 's-abcdefghij')).toBeUndefined();
    // Signed with another installation's token.
    const other = new SessionCookies(new CookieSigner('another-api-token-entirely'), () => now);
    expect(other.read(c, 's-abcdefghij')).toBeUndefined();
    now += 60_000;
    expect(cookies.read(c, 's-abcdefghij')).toBeUndefined();
  });

  it('keep student and operator cookies apart', () => {
    const admin = new AdminCookies(signer, 3600_000, () => now);
    const studentCookie = header(cookies.issue('s-abcdefghij', 'alice', now + 60_000, false));
    expect(admin.read(studentCookie)).toBeUndefined();
    const adminCookie = header(admin.issue('api-token', false));
    expect(admin.read(adminCookie)).toEqual({ operator: 'api-token' });
    expect(cookies.read(adminCookie, 's-abcdefghij')).toBeUndefined();
  });
});
