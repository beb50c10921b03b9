import { parse as parseCookies, serialize } from 'cookie';
import type { CookieSigner } from './signing.js';

const NAME = 'labvirt_session';

interface Payload {
  /** session id */
  s: string;
  /** student */
  u: string;
  /** expiry, ms since the epoch */
  e: number;
}

/**
 * The cookie a sign-in link is exchanged for: bound to one session (its path
 * is the session's, and the session id is inside the signed value), expiring
 * when the session can last no longer.
 */
export class SessionCookies {
  constructor(
    private readonly signer: CookieSigner,
    private readonly now: () => number = Date.now,
  ) {}

  /** A `Set-Cookie` value. */
  issue(sessionId: string, student: string, expiresAt: number, secure: boolean): string {
    const value = this.signer.sign({ s: sessionId, u: student, e: expiresAt } satisfies Payload);
    return serialize(NAME, value, {
      httpOnly: true,
      secure,
      sameSite: 'strict',
      path: `/s/${sessionId}`,
      expires: new Date(expiresAt),
    });
  }

  /** The student signed in to this session, from a `Cookie` header. */
  read(header: string | undefined, sessionId: string): { student: string } | undefined {
    if (!header) return undefined;
    const payload = this.signer.verify(parseCookies(header)[NAME]) as Payload | undefined;
    if (!payload || payload.s !== sessionId || typeof payload.u !== 'string') return undefined;
    if (typeof payload.e !== 'number' || payload.e <= this.now()) return undefined;
    return { student: payload.u };
  }
}

const ADMIN = 'labvirt_admin';

/** The operator's cookie after signing in with the API token (or an operator password). */
export class AdminCookies {
  constructor(
    private readonly signer: CookieSigner,
    private readonly ttlMs = 12 * 3600_000,
    private readonly now: () => number = Date.now,
  ) {}

  issue(operator: string, secure: boolean): string {
    const e = this.now() + this.ttlMs;
    return serialize(ADMIN, this.signer.sign({ op: operator, e }), {
      httpOnly: true,
      secure,
      sameSite: 'strict',
      path: '/admin',
      expires: new Date(e),
    });
  }

  clear(secure: boolean): string {
    return serialize(ADMIN, '', {
      httpOnly: true,
      secure,
      sameSite: 'strict',
      path: '/admin',
      maxAge: 0,
    });
  }

  read(header: string | undefined): { operator: string } | undefined {
    if (!header) return undefined;
    const payload = this.signer.verify(parseCookies(header)[ADMIN]) as
      { op?: unknown; e?: unknown } | undefined;
    if (!payload || typeof payload.op !== 'string' || typeof payload.e !== 'number')
      return undefined;
    if (payload.e <= this.now()) return undefined;
    return { operator: payload.op };
  }
}
