import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { LabvirtService } from '../../sessions/types.js';
import { actorOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { viewAfterChange, type SessionUpdates } from './session-wait.js';
import {
  checkResult,
  errorResponses,
  hintResult,
  jsonSchema,
  labId,
  publicKey,
  requestId,
  sessionId,
  sessionView,
  studentId,
} from '../schemas.js';

const startBody = z
  .object({
    /** May be left out when `X-Labvirt-Student` names the student. */
    student: studentId.optional(),
    labId,
    publicKey: publicKey.optional(),
    requestId: requestId.optional(),
  })
  .strict();
const startHeaders = z.object({ 'idempotency-key': requestId.optional() });
const listQuery = z.object({ student: studentId.optional(), includeEnded: z.boolean().optional() });
const idParams = z.object({ id: sessionId }).strict();
const waitQuery = z
  .object({
    /** The progress the client last saw (`waiting:3`, `claimed`, `preparing`, `preparing:slow`, …): answer once it differs. */
    after: z
      .string()
      .regex(/^[a-z]{1,16}(:([0-9]{1,9}|slow))?$/)
      .optional(),
    /** How long to wait for a change (default 25 s, at most 60). */
    waitSeconds: z.number().min(0).max(60).optional(),
  })
  .strict();

const DEFAULT_WAIT_SECONDS = 25;

const sessionResponse = { 200: jsonSchema(sessionView), ...errorResponses };

/**
 * Sessions: start, list, inspect (and wait for a change), stop, extend,
 * check, hint. `updates` wakes waiting clients.
 */
export function sessionRoutes(service: LabvirtService, updates: SessionUpdates) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.post<{ Body: z.infer<typeof startBody>; Headers: z.infer<typeof startHeaders> }>(
      '/sessions',
      {
        schema: {
          body: jsonSchema(startBody, 'input'),
          headers: jsonSchema(startHeaders, 'input'),
          response: { 201: jsonSchema(sessionView), ...sessionResponse },
        },
      },
      async (request, reply) => {
        const actor = actorOf(request);
        const body = request.body;
        const student = body.student ?? actor;
        if (student === undefined) {
          throw new ApiError('INVALID_REQUEST', 'field "student" is required', {
            field: 'student',
            location: 'body',
          });
        }
        if (actor !== undefined && student !== actor) {
          throw new ApiError('FORBIDDEN', 'cannot start a session for another student', {
            field: 'student',
          });
        }
        const headerKey = request.headers['idempotency-key'];
        if (body.requestId && headerKey && body.requestId !== headerKey) {
          throw new ApiError(
            'INVALID_REQUEST',
            'field "requestId" and header "Idempotency-Key" disagree: send one of them',
            { field: 'requestId' },
          );
        }
        const key = body.requestId ?? headerKey;
        // A repeated request id returns the session it made the first time.
        // The contract does not flag that, so look at what existed before.
        const before = key
          ? new Set((await service.list({ student, includeEnded: true })).map((s) => s.id))
          : new Set<string>();
        const view = await service.start({
          student,
          labId: body.labId,
          publicKey: body.publicKey,
          requestId: key,
        });
        const repeated = before.has(view.id);
        if (!repeated) reply.header('location', `/v1/sessions/${encodeURIComponent(view.id)}`);
        return reply.code(repeated ? 200 : 201).send(view);
      },
    );

    app.get<{ Querystring: z.infer<typeof listQuery> }>(
      '/sessions',
      {
        schema: {
          querystring: jsonSchema(listQuery, 'input'),
          response: {
            200: jsonSchema(z.object({ sessions: z.array(sessionView) })),
            ...errorResponses,
          },
        },
      },
      async (request) => {
        const actor = actorOf(request);
        const { student, includeEnded } = request.query;
        if (actor !== undefined && student !== undefined && student !== actor) {
          throw new ApiError('FORBIDDEN', "cannot list another student's sessions", {
            field: 'student',
          });
        }
        const sessions = await service.list({ student: actor ?? student, includeEnded });
        return { sessions: sessions.map(({ privateKey: _hidden, ...rest }) => rest) };
      },
    );

    type ById = { Params: z.infer<typeof idParams> };
    const byId = { params: jsonSchema(idParams, 'input') };

    app.get<ById & { Querystring: z.infer<typeof waitQuery> }>(
      '/sessions/:id',
      {
        schema: { ...byId, querystring: jsonSchema(waitQuery, 'input'), response: sessionResponse },
      },
      async (request, reply) => {
        const { id } = request.params;
        const actor = actorOf(request);
        const { after, waitSeconds } = request.query;
        if (after === undefined) return service.status(id, actor);
        // Ends the wait when the client hangs up (its answer would go nowhere).
        const gone = new AbortController();
        reply.raw.once('close', () => gone.abort());
        return viewAfterChange({
          sessionId: id,
          after,
          waitMs: (waitSeconds ?? DEFAULT_WAIT_SECONDS) * 1000,
          read: () => service.status(id, actor),
          updates,
          signal: gone.signal,
        });
      },
    );
    app.delete<ById>(
      '/sessions/:id',
      { schema: { ...byId, response: sessionResponse } },
      (request) => service.stop(request.params.id, actorOf(request)),
    );
    app.post<ById>(
      '/sessions/:id/extend',
      { schema: { ...byId, response: sessionResponse } },
      (request) => service.extend(request.params.id, actorOf(request)),
    );
    app.post<ById>(
      '/sessions/:id/check',
      { schema: { ...byId, response: { 200: jsonSchema(checkResult), ...errorResponses } } },
      (request) => service.check(request.params.id, actorOf(request)),
    );
    app.post<ById>(
      '/sessions/:id/hint',
      { schema: { ...byId, response: { 200: jsonSchema(hintResult), ...errorResponses } } },
      (request) => service.hint(request.params.id, actorOf(request)),
    );
  };
}
