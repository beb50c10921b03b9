import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Tamper-proof cookie values: `base64url(JSON).base64url(HMAC-SHA256)`. The
 * key is derived from the API token, which every replica already holds, so a
 * cookie made by one replica opens the page on any other and nothing about
 * signed-in browsers has to be stored.
 */
export class CookieSigner {
  private readonly key: Buffer;

  constructor(apiToken: string) {
    this.key = createHmac('sha256', apiToken).update('labvirt web cookies v1').digest();
  }

  sign(payload: object): string {
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return `${body}.${this.mac(body)}`;
  }

  /** The payload when the value is one we signed, else undefined. */
  verify(value: string | undefined): unknown {
    if (!value) return undefined;
    const dot = value.indexOf('.');
    if (dot <= 0) return undefined;
    const body = value.slice(0, dot);
    const given = Buffer.from(value.slice(dot + 1), 'base64url');
    const expected = Buffer.from(this.mac(body), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    try {
      return JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
