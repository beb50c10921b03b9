import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { LabvirtService } from '../../sessions/types.js';
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

const envQuery = z.object({ flavor: flavorName.optional(), state: envState.optional() });

/** Read-only views of the pool, its envs and the labs on offer. */
export function poolRoutes(service: LabvirtService) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.get(
      '/pool',
      { schema: { response: { 200: jsonSchema(poolStatus), ...errorResponses } } },
      () => service.poolStatus(),
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
        const envs = await service.listEnvs(request.query);
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
