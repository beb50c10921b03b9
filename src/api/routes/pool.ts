import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { rejectAfter } from '../../deadline/index.js';
import { LabvirtError, type LabvirtService } from '../../sessions/types.js';
import { actorOf } from '../auth.js';
import {
  envState,
  envView,
  errorResponses,
  flavorName,
  jsonSchema,
  labSummary,
  poolStatus,
} from '../schemas.js';

/**
 * Pool views read Redis and the cluster; while those do not answer (Redis
 * reconnecting queues commands for a long time) the caller gets a quick 503
 * instead of a request that hangs.
 */
const READ_DEADLINE_MS = 3000;

function withinDeadline<T>(work: Promise<T>): Promise<T> {
  return rejectAfter(
    work,
    READ_DEADLINE_MS,
    () =>
      new LabvirtError(
        'UNAVAILABLE',
        `the pool cannot be read right now (no answer within ${READ_DEADLINE_MS / 1000} s); retry later`,
        { retryAfterSeconds: 5 },
      ),
  );
}

const envQuery = z.object({ flavor: flavorName.optional(), state: envState.optional() });

/** Read-only views of the pool, its envs and the labs on offer. */
export function poolRoutes(service: LabvirtService) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.get(
      '/pool',
      { schema: { response: { 200: jsonSchema(poolStatus), ...errorResponses } } },
      () => withinDeadline(service.poolStatus()),
    );

    app.get<{ Querystring: z.infer<typeof envQuery> }>(
      '/envs',
      {
        schema: {
          querystring: jsonSchema(envQuery, 'input'),
          response: { 200: jsonSchema(z.object({ envs: z.array(envView) })), ...errorResponses },
        },
      },
      async (request) => {
        const actor = actorOf(request);
        const envs = await withinDeadline(service.listEnvs(request.query));
        // A front end acting for a student sees only that student's envs.
        return { envs: actor === undefined ? envs : envs.filter((e) => e.student === actor) };
      },
    );

    app.get(
      '/labs',
      {
        schema: {
          response: { 200: jsonSchema(z.object({ labs: z.array(labSummary) })), ...errorResponses },
        },
      },
      async () => ({ labs: await service.listLabs() }),
    );
  };
}
