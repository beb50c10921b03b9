import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Metrics } from '../../metrics/index.js';
import type { LabvirtService } from '../../sessions/types.js';
import { health, jsonSchema } from '../schemas.js';

/** A dependency that hangs (Redis retrying) must make the probe fail, not hang. */
const HEALTH_TIMEOUT_MS = 5_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Unauthenticated probes for the orchestrator (kubelet, Prometheus). */
export function healthRoutes(service: LabvirtService, metrics: Metrics) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.get(
      '/healthz',
      { schema: { response: { 200: jsonSchema(z.object({ ok: z.literal(true) })) } } },
      async () => ({ ok: true as const }),
    );

    app.get(
      '/readyz',
      { schema: { response: { 200: jsonSchema(health), 503: jsonSchema(health) } } },
      async (request, reply) => {
        let result: z.infer<typeof health>;
        try {
          result = await withTimeout(service.health(), HEALTH_TIMEOUT_MS);
        } catch (err) {
          request.log.warn({ err: (err as Error).message }, 'health check failed');
          // Unauthenticated route: say what kind of failure, not its internals.
          const detail = (err as Error).message.startsWith('no answer within')
            ? (err as Error).message
            : 'health check failed (see the server log)';
          result = { ok: false, checks: { service: { ok: false, detail } } };
        }
        return reply.code(result.ok ? 200 : 503).send(result);
      },
    );

    app.get('/metrics', async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    });
  };
}
