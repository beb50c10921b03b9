import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { jsonSchema } from '../schemas.js';

/** Where one-time private-key downloads are kept (src/store's key links). */
export interface KeyLinks {
  /** The key the first time; then `taken`; `unknown` for a link never made or expired. */
  takeKeyLink(token: string): Promise<string | 'taken' | 'unknown'>;
}

const params = z.object({ token: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/) });

/**
 * `GET /keys/<token>`: a session's private key, once. The token is the
 * secret (random, single use, expiring in minutes), so the route needs no
 * bearer token: it is the link a student opens from Slack in a browser.
 */
export function keyLinkRoutes(links: KeyLinks) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.get<{ Params: z.infer<typeof params> }>(
      '/keys/:token',
      { schema: { params: jsonSchema(params, 'input') } },
      async (request, reply) => {
        const key = await links.takeKeyLink(request.params.token);
        reply.header('cache-control', 'no-store');
        if (key === 'taken') {
          return reply
            .code(410)
            .type('text/plain; charset=utf-8')
            .send('This key was already downloaded: it is handed out once.\n');
        }
        if (key === 'unknown') {
          return reply
            .code(404)
            .type('text/plain; charset=utf-8')
            .send('No such key: the link is wrong or has expired.\n');
        }
        return reply
          .type('application/x-pem-file')
          .header('content-disposition', 'attachment; filename="lab.key"')
          .send(key);
      },
    );
  };
}
