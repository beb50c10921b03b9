import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { z } from 'zod';
import { rejectAfter } from '../../deadline/index.js';
import type { Metrics } from '../../metrics/index.js';
import type { LabvirtService } from '../../sessions/types.js';
import { health, jsonSchema } from '../schemas.js';

/** A dependency that hangs (Redis retrying) must make the probe fail, not hang. */
const HEALTH_TIMEOUT_MS = 5_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return rejectAfter(promise, ms, () => new Error(`no answer within ${ms / 1000} s`));
}

/** How long one readiness answer is reused. */
const READY_CACHE_MS = 1000;

/**
 * What an unauthenticated caller may see of a health result: which check
 * failed, not why (error texts name hosts, ports and users). The details go
 * to the log.
 */
function publicHealth(
  result: z.infer<typeof health>,
  log: FastifyBaseLogger,
): z.infer<typeof health> {
  const checks: z.infer<typeof health>['checks'] = {};
  for (const [name, check] of Object.entries(result.checks)) {
    if (!check.ok && check.detail) log.warn({ check: name, detail: check.detail }, 'not ready');
    checks[name] = check.ok
      ? { ok: true }
      : {
          ok: false,
          detail: check.detail?.startsWith('no answer within') ? check.detail : 'failed',
        };
  }
  return { ok: result.ok, checks };
}

/** Unauthenticated probes for the orchestrator (kubelet, Prometheus). */
export function healthRoutes(service: LabvirtService, metrics: Metrics) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.get(
      '/healthz',
      { schema: { response: { 200: jsonSchema(z.object({ ok: z.literal(true) })) } } },
      async () => ({ ok: true as const }),
    );

    // Probes arrive from many places at once (kubelet, load balancers,
    // Prometheus): one health check a second at most, shared by all of them.
    let cached: { at: number; result: Promise<z.infer<typeof health>> } | undefined;
    const readiness = (log: FastifyBaseLogger) => {
      const t = Date.now();
      if (cached && t - cached.at < READY_CACHE_MS) return cached.result;
      const result = withTimeout(service.health(), HEALTH_TIMEOUT_MS).then(
        (r) => publicHealth(r, log),
        (err: Error) => {
          log.warn({ err: err.message }, 'health check failed');
          return {
            ok: false,
            checks: {
              service: {
                ok: false,
                detail: err.message.startsWith('no answer within') ? err.message : 'failed',
              },
            },
          };
        },
      );
      cached = { at: t, result };
      return result;
    };

    app.get(
      '/readyz',
      { schema: { response: { 200: jsonSchema(health), 503: jsonSchema(health) } } },
      async (request, reply) => {
        const result = await readiness(request.log);
        return reply.code(result.ok ? 200 : 503).send(result);
      },
    );

    app.get('/metrics', async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    });
  };
}
