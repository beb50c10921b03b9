import { randomUUID } from 'node:crypto';
import type { RequestListener } from 'node:http';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import type { EventBus } from '../events/index.js';
import type { Logger } from '../log/index.js';
import { silentLogger } from '../log/index.js';
import type { Metrics } from '../metrics/index.js';
import type { LabvirtService, PoolAdmin } from '../sessions/types.js';
import { requireBearerToken } from './auth.js';
import { errorBody, installErrorHandling } from './errors.js';
import { installRateLimits, type ApiLimits } from './limits.js';
import { healthRoutes } from './routes/health.js';
import { keyLinkRoutes, type KeyLinks } from './routes/keys.js';
import { poolAdminRoutes } from './routes/pool-admin.js';
import { poolRoutes } from './routes/pool.js';
import type { SessionUpdates } from './routes/session-wait.js';
import { sessionRoutes } from './routes/sessions.js';

export interface ApiOptions {
  service: LabvirtService;
  events: EventBus;
  metrics: Metrics;
  /** Bearer token every /v1 call must present. */
  token: string;
  logger?: Logger;
  /**
   * Plain Node handlers served as they are, before anything reads the body
   * (Slack's `/slack/events`: its signature covers the exact bytes).
   */
  rawRoutes?: { path: string; listener: RequestListener }[];
  /** One-time private-key downloads at `/keys/<token>` (Slack, with `api.publicUrl`). */
  keyLinks?: KeyLinks;
  /** Rate limits of the /v1 routes (none when absent). */
  limits?: ApiLimits;
  /** Operators' pool actions (`/v1/pool/flavors/...`, `/v1/pool/envs/...`); absent: no such routes. */
  poolAdmin?: PoolAdmin;
  /**
   * What wakes clients waiting on a session (`GET /v1/sessions/:id?after=`):
   * every replica's events (src/web's feed). Default: this process's `events`.
   */
  sessionUpdates?: SessionUpdates;
  /** The web pages (src/web): student terminal, operator dashboard, and their WebSocket. */
  web?: {
    routes: (app: FastifyInstance) => Promise<void>;
    v1Routes: (app: FastifyInstance) => Promise<void>;
    attach(server: FastifyInstance['server']): { close(): void };
  };
}

export interface StartApiOptions extends ApiOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
}

export interface ApiHandle {
  /** e.g. `http://127.0.0.1:8080` */
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** Builds (without listening) the HTTP API: health, metrics and the authenticated /v1 routes. */
export function buildApi(options: ApiOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger ?? silentLogger(),
    bodyLimit: 64 * 1024,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // fastify's own request lines carry the whole URL, query string included
    // (where a careless client may put a token): logged below without it.
    logController: new LogController({ disableRequestLogging: true }),
    // Router refusals (a path parameter over 100 characters: 414, a malformed
    // URL: 400) in the one error shape, without echoing the path back.
    frameworkErrors: (err, _request, rawReply) => {
      const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
      const reply = rawReply as unknown as FastifyReply;
      void reply
        .code(tooLong ? 414 : 400)
        .send(
          errorBody(
            'INVALID_REQUEST',
            tooLong
              ? 'the URL is too long: a path parameter may have at most 100 characters'
              : 'the URL is not valid',
            { location: 'url' },
          ),
        );
    },
  }) as unknown as FastifyInstance;
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        path: request.url.split('?')[0],
        statusCode: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request completed',
    );
  });
  app.setValidatorCompiler(validatorCompiler());
  installErrorHandling(app);
  // Action routes (extend, check, hint) take no body; some HTTP clients still
  // send `Content-Type: application/json` with an empty one. Accept that.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, undefined);
    return parseJson(request, body.toString(), done);
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // The API's description, built from the routes' own schemas (registered before them).
  void app.register(swagger, {
    openapi: {
      info: { title: 'labvirt HTTP API', version: 'v1' },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
    },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  void app.register(healthRoutes(options.service, options.metrics));
  for (const route of options.rawRoutes ?? []) {
    app.route({
      method: ['GET', 'POST'],
      url: route.path,
      // onRequest runs before the body is parsed: the handler gets the raw stream.
      onRequest: (request, reply, done) => {
        void done;
        reply.hijack();
        route.listener(request.raw, reply.raw);
      },
      handler: async () => undefined,
    });
  }
  if (options.keyLinks) void app.register(keyLinkRoutes(options.keyLinks));
  if (options.web) {
    void app.register(options.web.routes);
    const sockets = options.web.attach(app.server);
    app.addHook('onClose', async () => sockets.close());
  }
  void app.register(
    async (v1) => {
      requireBearerToken(v1, options.token);
      if (options.limits) installRateLimits(v1, options.limits);
      v1.addHook('onRoute', (route) => {
        route.schema = { ...route.schema, security: [{ bearer: [] }] };
      });
      // Responses may carry a session's private key: keep them out of caches.
      v1.addHook('onSend', async (_request, reply) => {
        reply.header('cache-control', 'no-store');
      });
      await v1.register(
        sessionRoutes(
          options.service,
          options.sessionUpdates ?? { subscribe: (listener) => options.events.onAny(listener) },
        ),
      );
      await v1.register(poolRoutes(options.service));
      if (options.poolAdmin) await v1.register(poolAdminRoutes(options.poolAdmin));
      if (options.web) await v1.register(options.web.v1Routes);
    },
    { prefix: '/v1' },
  );
  return app;
}

/**
 * Query strings, path parameters and headers are text, so they are coerced
 * (`includeEnded=true` → boolean); JSON bodies are typed and taken as sent
 * (a number is not a student id). Unknown body fields are refused rather than
 * silently dropped, so a typo (`labid`) is an error that names it.
 */
function validatorCompiler() {
  const base = {
    allErrors: false,
    useDefaults: true,
    removeAdditional: false,
    strict: false,
  } as const;
  const textual = new Ajv({ ...base, coerceTypes: 'array' });
  const typed = new Ajv({ ...base, coerceTypes: false });
  for (const ajv of [textual, typed]) addFormats.default(ajv);
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) =>
    (httpPart === 'body' ? typed : textual).compile(schema);
}

/** Builds the API and listens; `close()` stops accepting and waits for in-flight requests. */
export async function startApi(options: StartApiOptions): Promise<ApiHandle> {
  const app = buildApi(options);
  const host = options.host ?? '127.0.0.1';
  await app.listen({ host, port: options.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  // A server bound to every interface is reached, from here, on loopback.
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const shownHost = reachable.includes(':') ? `[${reachable}]` : reachable;
  return { url: `http://${shownHost}:${port}`, app, close: () => app.close() };
}
