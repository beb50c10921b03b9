import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';
import { studentId } from './schemas.js';

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Requires `Authorization: Bearer <token>` on every route of the scope it is
 * added to. Comparing digests keeps the comparison constant-time whatever the
 * length of what was sent; the presented value is never logged.
 */
export function requireBearerToken(scope: FastifyInstance, token: string): void {
  if (token.length === 0) throw new Error('the API token must not be empty');
  const expected = digest(token);
  scope.addHook('onRequest', async (request) => {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) {
      throw new ApiError(
        'UNAUTHORIZED',
        'missing bearer token: send "Authorization: Bearer <token>"',
      );
    }
    if (!timingSafeEqual(digest(match[1]!), expected)) {
      throw new ApiError('UNAUTHORIZED', 'invalid API token');
    }
  });
}

/**
 * The student a front end acts for (`X-Labvirt-Student`), or undefined for an
 * operator call. The service refuses sessions of other students for an actor.
 */
export function actorOf(request: FastifyRequest): string | undefined {
  const raw = request.headers['x-labvirt-student'];
  if (raw === undefined) return undefined;
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || !studentId.safeParse(value).success) {
    throw new ApiError(
      'INVALID_REQUEST',
      'header "x-labvirt-student" is invalid (expected a Slack user id or an email, at most 128 characters)',
      { field: 'x-labvirt-student', location: 'headers' },
    );
  }
  return value;
}
