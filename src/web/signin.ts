import { randomBytes } from 'node:crypto';

/**
 * Where single-use sign-in tokens live: src/store's one-time links (Redis, so
 * a link made by one replica is redeemed by any, exactly once).
 */
export interface SingleUseTokens {
  putKeyLink(token: string, value: string, ttlSeconds: number): Promise<void>;
  takeKeyLink(token: string): Promise<string | 'taken' | 'unknown'>;
}

/** Marks a stored value as a web sign-in (the store's one-time links also carry key downloads). */
const PREFIX = 'web-sign-in:';
export const SIGN_IN_TOKEN = /^[A-Za-z0-9_-]{43}$/;

export async function issueSignInToken(
  tokens: SingleUseTokens,
  sessionId: string,
  ttlSeconds: number,
): Promise<string> {
  const token = randomBytes(32).toString('base64url');
  await tokens.putKeyLink(token, `${PREFIX}${sessionId}`, ttlSeconds);
  return token;
}

/** The session the token was made for, the first time; `taken` or `unknown` after. */
export async function redeemSignInToken(
  tokens: SingleUseTokens,
  token: string,
): Promise<{ sessionId: string } | 'taken' | 'unknown'> {
  if (!SIGN_IN_TOKEN.test(token)) return 'unknown';
  const value = await tokens.takeKeyLink(token);
  if (value === 'taken' || value === 'unknown') return value;
  if (!value.startsWith(PREFIX)) return 'unknown';
  return { sessionId: value.slice(PREFIX.length) };
}
