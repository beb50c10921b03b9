import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ENV_ID_PATTERN } from '../../kube/index.js';
import type { PoolAdmin } from '../../sessions/types.js';
import { actorOf } from '../auth.js';
import { ApiError } from '../errors.js';
import { envView, errorResponses, flavorName, flavorPoolStatus, jsonSchema } from '../schemas.js';

const flavorParams = z.object({ flavor: flavorName });
const envParams = z.object({ id: z.string().regex(ENV_ID_PATTERN) });
const targetBody = z.strictObject({ targetWarm: z.number().int().min(0) });
const drainResult = z.object({
  flavor: z.string(),
  tearingDown: z.array(z.string()),
  inUse: z.number().int(),
  inFlight: z.number().int(),
});

/**
 * Operators' actions on the pool. A front end acting for a student
 * (`X-Labvirt-Student`) may not use them; every call is an audit line.
 */
export function poolAdminRoutes(admin: PoolAdmin) {
  const operatorOnly = (request: FastifyRequest, action: string, what: Record<string, unknown>) => {
    if (actorOf(request) !== undefined) {
      throw new ApiError('FORBIDDEN', 'pool actions are for operators, not on behalf of a student');
    }
    request.log.info(
      { audit: 'api.pool.action', action, ...what, source: request.ip },
      'operator pool action',
    );
  };
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.put<{ Params: z.infer<typeof flavorParams>; Body: z.infer<typeof targetBody> }>(
      '/pool/flavors/:flavor/target',
      {
        schema: {
          summary: "Sets a flavor's warm target at runtime (0 … maxTotal), for every replica",
          params: jsonSchema(flavorParams, 'input'),
          body: jsonSchema(targetBody, 'input'),
          response: { 200: jsonSchema(flavorPoolStatus), ...errorResponses },
        },
      },
      async (request) => {
        const { flavor } = request.params;
        operatorOnly(request, 'set-target', { flavor, targetWarm: request.body.targetWarm });
        return admin.setWarmTarget(flavor, request.body.targetWarm);
      },
    );

    app.delete<{ Params: z.infer<typeof flavorParams> }>(
      '/pool/flavors/:flavor/target',
      {
        schema: {
          summary:
            "Drops the runtime target: the flavor's configured minWarm and schedules apply again",
          params: jsonSchema(flavorParams, 'input'),
          response: { 200: jsonSchema(flavorPoolStatus), ...errorResponses },
        },
      },
      async (request) => {
        const { flavor } = request.params;
        operatorOnly(request, 'clear-target', { flavor });
        return admin.clearWarmTarget(flavor);
      },
    );

    app.post<{ Params: z.infer<typeof flavorParams> }>(
      '/pool/flavors/:flavor/drain',
      {
        schema: {
          summary: 'Target 0 and tears down the warm envs; envs in use finish normally',
          params: jsonSchema(flavorParams, 'input'),
          response: { 200: jsonSchema(drainResult), ...errorResponses },
        },
      },
      async (request) => {
        const { flavor } = request.params;
        operatorOnly(request, 'drain', { flavor });
        return admin.drainFlavor(flavor);
      },
    );

    app.delete<{ Params: z.infer<typeof envParams> }>(
      '/pool/envs/:id',
      {
        schema: {
          summary: 'Tears down a failed env (any other state is refused with 409 ENV_NOT_FAILED)',
          params: jsonSchema(envParams, 'input'),
          response: { 202: jsonSchema(envView), ...errorResponses },
        },
      },
      async (request, reply) => {
        const { id } = request.params;
        operatorOnly(request, 'delete-env', { envId: id });
        const view = await admin.deleteFailedEnv(id);
        return reply.code(202).send(view);
      },
    );
  };
}
