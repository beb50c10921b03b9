import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { LabvirtError, type LabvirtErrorCode } from '../sessions/types.js';
import { FIELD_HINTS, type ErrorBody } from './schemas.js';

/** Codes the API itself adds to the service's {@link LabvirtErrorCode}s. */
export type ApiOnlyErrorCode = 'UNAUTHORIZED' | 'FORBIDDEN' | 'NOT_FOUND' | 'INTERNAL';
export type ApiErrorCode = LabvirtErrorCode | ApiOnlyErrorCode;

export const STATUS_OF_CODE: Record<ApiErrorCode, number> = {
  INVALID_REQUEST: 400,
  INVALID_PUBLIC_KEY: 400,
  UNAUTHORIZED: 401,
  NOT_YOUR_SESSION: 403,
  FORBIDDEN: 403,
  UNKNOWN_LAB: 404,
  SESSION_NOT_FOUND: 404,
  ENV_NOT_FOUND: 404,
  NOT_FOUND: 404,
  LIMIT_REACHED: 409,
  REQUEST_ID_IN_USE: 409,
  CHECK_RUNNING: 409,
  RATE_LIMITED: 429,
  MAX_EXTENSION: 409,
  NO_MORE_HINTS: 409,
  SESSION_NOT_ACTIVE: 409,
  ENV_NOT_FAILED: 409,
  UNKNOWN_FLAVOR: 422,
  INTERNAL: 500,
  UNAVAILABLE: 503,
};

/** An error the API raises itself (auth, header checks); rendered like a service error. */
export class ApiError extends Error {
  constructor(
    readonly code: ApiOnlyErrorCode | LabvirtErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function errorBody(
  code: ApiErrorCode,
  message: string,
  details?: Record<string, unknown>,
): ErrorBody {
  return { error: details ? { code, message, details } : { code, message } };
}

export function sendError(reply: FastifyReply, err: ApiError | LabvirtError): FastifyReply {
  const status = STATUS_OF_CODE[err.code] ?? 500;
  const retryAfter = err.details?.retryAfterSeconds;
  if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
  return reply.code(status).send(errorBody(err.code, err.message, err.details));
}

/** Service errors by shape too, in case two copies of the class are loaded. */
function isCodedError(err: unknown): err is ApiError | LabvirtError {
  if (err instanceof LabvirtError || err instanceof ApiError) return true;
  const e = err as { name?: unknown; code?: unknown };
  return e?.name === 'LabvirtError' && typeof e.code === 'string' && e.code in STATUS_OF_CODE;
}

interface AjvIssue {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** Turns fastify's (ajv's) first validation issue into a message naming the field. */
function describeValidation(err: FastifyError): {
  message: string;
  details: Record<string, unknown>;
} {
  const location = err.validationContext ?? 'body';
  const issue = (err.validation?.[0] ?? { keyword: '', instancePath: '', params: {} }) as AjvIssue;
  const path = issue.instancePath.split('/').filter(Boolean);
  let field = path.join('.');
  let problem = issue.message ?? 'is invalid';
  if (issue.keyword === 'required') {
    field = [...path, String(issue.params.missingProperty)].join('.');
    problem = 'is required';
  } else if (issue.keyword === 'additionalProperties') {
    field = [...path, String(issue.params.additionalProperty)].join('.');
    problem = 'is not a known field';
  }
  const hint = FIELD_HINTS[path.at(-1) ?? field] ?? FIELD_HINTS[field];
  const where =
    location === 'querystring'
      ? 'query parameter'
      : location === 'params'
        ? 'path parameter'
        : location === 'headers'
          ? 'header'
          : 'field';
  const name = field || location;
  const message =
    `${where} "${name}" ${problem}` +
    (hint && problem !== 'is required' && problem !== 'is not a known field'
      ? ` (expected ${hint})`
      : '');
  return { message, details: { field: name, location, rule: issue.keyword } };
}

/**
 * One error shape for every failure: service errors keep their stable code,
 * fastify's own 4xx become INVALID_REQUEST, everything else is INTERNAL with
 * no internals leaked (the cause goes to the log, not to the client).
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isCodedError(err)) return sendError(reply, err);
    if (err.validation) {
      const { message, details } = describeValidation(err);
      return reply.code(400).send(errorBody('INVALID_REQUEST', message, details));
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return reply.code(status).send(errorBody('INVALID_REQUEST', err.message));
    }
    request.log.error({ err }, 'request failed');
    return reply
      .code(500)
      .send(errorBody('INTERNAL', 'internal error; the server log has details'));
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
