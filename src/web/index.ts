import type { Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../log/index.js';
import { LabvirtError, type LabvirtService, type PoolAdmin } from '../sessions/types.js';
import { loadAssets } from './assets.js';
import type { GatewayTarget } from './bridge.js';
import type { EventFeed } from './feed.js';
import { OperatorLogins, type OperatorAccount } from './operators.js';
import { webRoutes, type LoginAttempts } from './routes.js';
import { AdminCookies, SessionCookies } from './session-cookie.js';
import { issueSignInToken, type SingleUseTokens } from './signin.js';
import { CookieSigner } from './signing.js';
import { attachTerminalSockets } from './terminal.js';

export { withBridgeKey, TERMINAL_NODES, type GatewayTarget, type TerminalNode } from './bridge.js';
export { linkEventFeed, type EventFeed, type FeedEntry } from './feed.js';
export { CONTENT_SECURITY_POLICY, type LoginAttempts } from './routes.js';
export { hashPassword, PASSWORD_HASH, type OperatorAccount } from './operators.js';
export { issueSignInToken, type SingleUseTokens } from './signin.js';

export interface WebOptions {
  service: LabvirtService;
  /** One-time sign-in tokens (src/store). */
  tokens: SingleUseTokens;
  /** The API token: operators sign in with it, and cookies are signed with a key derived from it. */
  apiToken: string;
  /** Where terminals enter (undefined while no gateway is known: terminals answer 503). */
  gateway: () => GatewayTarget | undefined;
  /** Every replica's events, for the dashboard's live feed. */
  feed?: EventFeed;
  /** The dashboard's pool actions (resize a flavor's target, drain it, delete a failed env). */
  poolAdmin?: PoolAdmin;
  /** Operator logins beside the API token (`web.operators`); they need `loginAttempts`. */
  operators?: readonly OperatorAccount[];
  /** Counts sign-in attempts across replicas (src/store); absent: sign-ins are not limited. */
  loginAttempts?: LoginAttempts;
  /** Sign-in attempts a minute from one address, and for one username (default 10). */
  loginAttemptsPerMinute?: number;
  logger: Logger;
  /** Base of the links handed out (`api.publicUrl`), else the address the API was called on. */
  publicUrl?: string;
  /**
   * Run each terminal's shell in tmux when the node has it, so it outlives a
   * dropped connection (default true; the bench turns it off to time the
   * transport alone).
   */
  persistentShells?: boolean;
  /** How long a sign-in link can be used (default 15 minutes). */
  linkTtlSeconds?: number;
  now?: () => number;
}

/** What the HTTP API mounts: public pages, a /v1 route, and the terminal WebSocket. */
export interface WebFrontEnd {
  /** `/s/<session>`, `/admin`, `/web/assets/*`. */
  routes: (app: FastifyInstance) => Promise<void>;
  /** `POST /v1/sessions/:id/web-link` (inside the API's bearer-token scope). */
  v1Routes: (app: FastifyInstance) => Promise<void>;
  /** Serves `/s/<session>/terminal` WebSocket upgrades on the API's server. */
  attach(server: Server): { close(): void };
}

/** Builds the web front end; bundles the page scripts once (esbuild, from node_modules), or loads those bundled at build time. */
export async function createWebFrontEnd(options: WebOptions): Promise<WebFrontEnd> {
  const now = options.now ?? Date.now;
  const signer = new CookieSigner(options.apiToken);
  const cookies = new SessionCookies(signer, now);
  const assets = await loadAssets();
  const linkTtl = options.linkTtlSeconds ?? 15 * 60;
  const operators = new OperatorLogins(options.operators ?? []);
  if (operators.size > 0 && !options.loginAttempts) {
    throw new Error('operator logins need a sign-in attempt counter (loginAttempts)');
  }
  return {
    routes: webRoutes({
      service: options.service,
      tokens: options.tokens,
      cookies,
      adminCookies: new AdminCookies(signer, 12 * 3600_000, now),
      apiToken: options.apiToken,
      assets,
      feed: options.feed,
      poolAdmin: options.poolAdmin,
      operators,
      loginAttempts: options.loginAttempts,
      loginAttemptsPerMinute: options.loginAttemptsPerMinute ?? 10,
      audit: options.logger,
      publicUrl: options.publicUrl,
      now,
    }),
    v1Routes: async (app) => {
      app.post<{ Params: { id: string } }>(
        '/sessions/:id/web-link',
        {
          schema: {
            summary: 'A single-use link that opens the session page in a browser',
            params: {
              type: 'object',
              properties: { id: { type: 'string', pattern: '^s-[a-z0-9]{10}$' } },
              required: ['id'],
            },
          },
        },
        async (request) => {
          const header = request.headers['x-labvirt-student'];
          const actor = typeof header === 'string' ? header : undefined;
          const session = await options.service.status(request.params.id, actor);
          if (session.state !== 'active') {
            throw new LabvirtError(
              'SESSION_NOT_ACTIVE',
              `session ${session.id} is ${session.state}: a page link is given once it is active`,
            );
          }
          const token = await issueSignInToken(options.tokens, session.id, linkTtl);
          const base =
            options.publicUrl?.replace(/\/+$/, '') ??
            `${request.protocol}://${request.headers.host ?? 'localhost'}`;
          return {
            sessionId: session.id,
            url: `${base}/s/${session.id}?t=${token}`,
            expiresAt: new Date(now() + linkTtl * 1000).toISOString(),
          };
        },
      );
    },
    attach: (server) =>
      attachTerminalSockets({
        server,
        service: options.service,
        cookies,
        gateway: options.gateway,
        audit: options.logger,
        now,
        persistentShells: options.persistentShells,
      }),
  };
}
