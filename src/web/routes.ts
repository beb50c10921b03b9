import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../log/index.js';
import {
  LabvirtError,
  type LabvirtService,
  type PoolAdmin,
  type PoolStatus,
} from '../sessions/types.js';
import type { Asset } from './assets.js';
import type { EventFeed } from './feed.js';
import type { OperatorLogins } from './operators.js';
import { adminLoginPage, adminPage, endedPage, messagePage, sessionPage } from './pages.js';
import type { AdminCookies, SessionCookies } from './session-cookie.js';
import { redeemSignInToken, type SingleUseTokens } from './signin.js';

/**
 * Scripts only from labvirt itself, nothing inline. Styles allow inline
 * because xterm.js sizes its rows with a generated <style> element.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SESSION_ID = /^s-[a-z0-9]{10}$/;
const FLAVOR = /^[a-z0-9][a-z0-9.-]{0,62}$/;
const ENV_ID = /^[a-z0-9]{1,20}$/;
/** Every state-changing call carries it: a form or link on another site cannot. */
const CSRF_HEADER = 'x-labvirt-web';

export interface WebRouteOptions {
  service: LabvirtService;
  tokens: SingleUseTokens;
  cookies: SessionCookies;
  adminCookies: AdminCookies;
  apiToken: string;
  assets: Map<string, Asset>;
  feed?: EventFeed;
  /** The dashboard's pool actions (resize, drain, delete a failed env); absent: none offered. */
  poolAdmin?: PoolAdmin;
  /** Operator usernames and passwords (`web.operators`), beside the API token. */
  operators: OperatorLogins;
  /** Counts sign-in attempts across replicas (src/store's sliding windows). */
  loginAttempts?: LoginAttempts;
  /** Sign-in attempts a minute from one address, and for one username. */
  loginAttemptsPerMinute: number;
  audit: Logger;
  /** Cookies are `Secure` when the page is served over TLS or the public URL is https. */
  publicUrl?: string;
  now: () => number;
}

/** A sliding-window counter shared by every replica: returns the count including this one. */
export interface LoginAttempts {
  countRequest(what: string, windowSeconds: number): Promise<number>;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

function secure(request: FastifyRequest, publicUrl?: string): boolean {
  return request.protocol === 'https' || (publicUrl?.startsWith('https:') ?? false);
}

function html(reply: FastifyReply, status: number, body: string) {
  return reply.code(status).type('text/html; charset=utf-8').send(body);
}

const STATUS_OF: Partial<Record<LabvirtError['code'], number>> = {
  SESSION_NOT_FOUND: 404,
  NOT_YOUR_SESSION: 403,
  SESSION_NOT_ACTIVE: 409,
  MAX_EXTENSION: 409,
  NO_MORE_HINTS: 409,
  UNKNOWN_FLAVOR: 404,
  ENV_NOT_FOUND: 404,
  ENV_NOT_FAILED: 409,
  UNAVAILABLE: 503,
};

/** A service refusal as `{ error: { code, message } }` the page shows as it is. */
async function answer(reply: FastifyReply, work: () => Promise<unknown>) {
  try {
    return await work();
  } catch (err) {
    if (err instanceof LabvirtError) {
      return reply
        .code(STATUS_OF[err.code] ?? 400)
        .send({ error: { code: err.code, message: err.message } });
    }
    throw err;
  }
}

interface PoolSample {
  at: number;
  flavors: Record<string, { warm: number; used: number }>;
}

/** The student page, the operator dashboard and what their scripts call. */
export function webRoutes(o: WebRouteOptions) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    // Pages, not API: kept out of /openapi.json.
    app.addHook('onRoute', (route) => {
      route.schema = { ...route.schema, hide: true };
    });
    app.addHook('onSend', async (_request, reply) => {
      reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    });

    app.get<{ Params: { name: string } }>('/web/assets/:name', async (request, reply) => {
      const asset = o.assets.get(request.params.name);
      if (!asset) return reply.code(404).type('text/plain').send('no such asset\n');
      return reply.type(asset.type).header('cache-control', 'public, max-age=300').send(asset.body);
    });

    /**
     * A POST without the page's own header (which a cross-site form cannot
     * send) is refused with 403; says whether it was.
     */
    const refusedWithoutCsrfHeader = (request: FastifyRequest, reply: FastifyReply): boolean => {
      if (request.method !== 'POST' || request.headers[CSRF_HEADER] === '1') return false;
      void reply
        .code(403)
        .send({ error: { code: 'FORBIDDEN', message: `missing header ${CSRF_HEADER}` } });
      return true;
    };

    // ---- the student's page -------------------------------------------
    const signedIn = (request: FastifyRequest, sessionId: string) =>
      SESSION_ID.test(sessionId) ? o.cookies.read(request.headers.cookie, sessionId) : undefined;
    const requireStudent = (request: FastifyRequest, reply: FastifyReply, sessionId: string) => {
      const who = signedIn(request, sessionId);
      if (!who) {
        void reply.code(401).send({
          error: {
            code: 'UNAUTHORIZED',
            message: 'open the link labvirt gave you for this session',
          },
        });
        return undefined;
      }
      return refusedWithoutCsrfHeader(request, reply) ? undefined : who;
    };

    app.get<{ Params: { id: string }; Querystring: { t?: string } }>(
      '/s/:id',
      async (request, reply) => {
        const { id } = request.params;
        const token = request.query.t;
        if (typeof token === 'string') {
          const redeemed = await redeemSignInToken(o.tokens, token);
          if (redeemed === 'taken') {
            return html(
              reply,
              410,
              messagePage(
                'Link already used',
                'This sign-in link was already used: each link opens the page once. Ask for a new one (labvirt status).',
              ),
            );
          }
          if (redeemed === 'unknown' || redeemed.sessionId !== id) {
            return html(
              reply,
              404,
              messagePage(
                'Unknown link',
                'This sign-in link is wrong or has expired. Ask for a new one (labvirt status).',
              ),
            );
          }
          const session = await o.service.status(id);
          const until =
            Date.parse(session.maxExpiresAt ?? session.expiresAt ?? '') || o.now() + 3600_000;
          o.audit.info(
            { audit: 'web.sign-in', sessionId: id, student: session.student, source: request.ip },
            'web sign-in',
          );
          reply.header(
            'set-cookie',
            o.cookies.issue(id, session.student, until, secure(request, o.publicUrl)),
          );
          // Out of the address bar (and history) at once.
          return reply.redirect(`/s/${id}`, 303);
        }
        const who = signedIn(request, id);
        if (!who) {
          return html(
            reply,
            401,
            messagePage(
              'Sign in first',
              'Open the link labvirt gave you for this session (labvirt status prints a new one).',
            ),
          );
        }
        const session = await o.service.status(id, who.student).catch(() => undefined);
        if (!session)
          return html(reply, 404, messagePage('No such session', `Session ${id} is unknown.`));
        if (session.state === 'ended') return html(reply, 410, endedPage(session));
        if (session.state !== 'active') {
          return html(
            reply,
            409,
            messagePage(
              'Not ready yet',
              `Your environment is ${session.state}; reload this page in a moment.`,
            ),
          );
        }
        return html(reply, 200, sessionPage(session));
      },
    );

    app.get<{ Params: { id: string } }>('/s/:id/state', async (request, reply) => {
      const who = requireStudent(request, reply, request.params.id);
      if (!who) return reply;
      return answer(reply, async () => {
        const s = await o.service.status(request.params.id, who.student);
        return {
          state: s.state,
          expiresAt: s.expiresAt,
          maxExpiresAt: s.maxExpiresAt,
          hintsUsed: s.hintsUsed,
          hintsTotal: s.hintsTotal,
          solvedAt: s.solvedAt,
          endedReason: s.endedReason,
        };
      });
    });

    const actions = {
      check: (id: string, student: string) => o.service.check(id, student),
      hint: (id: string, student: string) => o.service.hint(id, student),
      extend: (id: string, student: string) => o.service.extend(id, student),
      stop: (id: string, student: string) => o.service.stop(id, student),
    };
    for (const [name, action] of Object.entries(actions)) {
      app.post<{ Params: { id: string } }>(`/s/:id/${name}`, async (request, reply) => {
        const who = requireStudent(request, reply, request.params.id);
        if (!who) return reply;
        return answer(reply, () => action(request.params.id, who.student));
      });
    }

    // ---- the operator dashboard ---------------------------------------
    const expected = digest(o.apiToken);
    const operator = (request: FastifyRequest) => o.adminCookies.read(request.headers.cookie);
    const requireOperator = (request: FastifyRequest, reply: FastifyReply) => {
      const who = operator(request);
      if (!who) {
        void reply
          .code(401)
          .send({ error: { code: 'UNAUTHORIZED', message: 'sign in at /admin' } });
        return undefined;
      }
      return refusedWithoutCsrfHeader(request, reply) ? undefined : who;
    };

    app.get('/admin', async (request, reply) => {
      const who = operator(request);
      return html(
        reply,
        200,
        who
          ? adminPage(who.operator, o.poolAdmin !== undefined)
          : adminLoginPage(o.operators.size > 0),
      );
    });

    app.get('/admin/login', async (request, reply) => {
      if (operator(request)) return reply.redirect('/admin', 303);
      return html(reply, 200, adminLoginPage(o.operators.size > 0));
    });

    /** True when this address or this username tried too often in the last minute. */
    const tooManyAttempts = async (source: string, username?: string) => {
      if (!o.loginAttempts) return false;
      const bySource = await o.loginAttempts.countRequest(`web-login:source:${source}`, 60);
      const byUser = username
        ? await o.loginAttempts.countRequest(
            `web-login:user:${digest(username).toString('hex')}`,
            60,
          )
        : 0;
      return Math.max(bySource, byUser) > o.loginAttemptsPerMinute;
    };

    app.post<{ Body: { token?: unknown; username?: unknown; password?: unknown } | null }>(
      '/admin/login',
      async (request, reply) => {
        const body = request.body ?? {};
        const refuse = (status: number, code: string, message: string, reason: string) => {
          o.audit.warn(
            { audit: 'web.admin.sign-in.refused', reason, source: request.ip },
            'operator sign-in refused',
          );
          return reply.code(status).send({ error: { code, message } });
        };
        if (request.headers[CSRF_HEADER] !== '1')
          return refuse(403, 'FORBIDDEN', `missing header ${CSRF_HEADER}`, 'no-header');
        const username = typeof body.username === 'string' ? body.username : undefined;
        if (await tooManyAttempts(request.ip, username)) {
          return refuse(
            429,
            'RATE_LIMITED',
            'too many sign-in attempts: wait a minute and try again',
            'rate-limited',
          );
        }
        let who: string | undefined;
        if (username !== undefined) {
          const password = typeof body.password === 'string' ? body.password : '';
          who =
            username.length <= 128 && password.length <= 1024
              ? await o.operators.verify(username, password)
              : undefined;
          // One answer for an unknown user and a wrong password.
          if (!who)
            return refuse(401, 'UNAUTHORIZED', 'wrong username or password', 'wrong-password');
        } else {
          const token = body.token;
          if (typeof token !== 'string' || !timingSafeEqual(digest(token), expected))
            return refuse(401, 'UNAUTHORIZED', 'wrong API token', 'wrong-token');
          who = 'api-token';
        }
        o.audit.info(
          { audit: 'web.admin.sign-in', operator: who, source: request.ip },
          'operator signed in',
        );
        reply.header('set-cookie', o.adminCookies.issue(who, secure(request, o.publicUrl)));
        return { ok: true };
      },
    );

    app.post('/admin/logout', async (request, reply) => {
      reply.header('set-cookie', o.adminCookies.clear(secure(request, o.publicUrl)));
      return { ok: true };
    });

    // A small in-memory history for the last-hour charts (one sample a minute).
    const history: PoolSample[] = [];
    const sample = (pool: PoolStatus) => {
      const at = o.now();
      const last = history.at(-1);
      if (last && at - last.at < 60_000) history.pop();
      history.push({
        at,
        flavors: Object.fromEntries(
          pool.flavors.map((f) => [
            f.flavor,
            { warm: f.counts.warm, used: f.counts.claimed + f.counts.preparing + f.counts.active },
          ]),
        ),
      });
      while (history.length > 0 && at - history[0]!.at > 3600_000) history.shift();
    };

    app.get('/admin/state', async (request, reply) => {
      if (!requireOperator(request, reply)) return reply;
      const [pool, envs, sessions] = await Promise.all([
        o.service.poolStatus(),
        o.service.listEnvs(),
        o.service.list(),
      ]);
      sample(pool);
      return {
        at: new Date(o.now()).toISOString(),
        pool,
        envs,
        waiting: sessions
          .filter((s) => s.state === 'waiting')
          .map((s) => ({
            id: s.id,
            student: s.student,
            labId: s.labId,
            flavor: s.flavor,
            queue: s.queue,
          }))
          .sort((a, b) => (a.queue?.position ?? 0) - (b.queue?.position ?? 0)),
        history,
        feed: o.feed?.recent() ?? [],
      };
    });

    app.get('/admin/events', async (request, reply) => {
      if (!requireOperator(request, reply)) return reply;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        'content-security-policy': CONTENT_SECURITY_POLICY,
        connection: 'keep-alive',
      });
      res.write(': labvirt events\n\n');
      const off = o.feed?.subscribe((entry) => res.write(`data: ${JSON.stringify(entry)}\n\n`));
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
      request.raw.on('close', () => {
        clearInterval(ping);
        off?.();
      });
    });

    app.post<{ Params: { id: string } }>('/admin/sessions/:id/stop', async (request, reply) => {
      const who = requireOperator(request, reply);
      if (!who) return reply;
      const { id } = request.params;
      if (!SESSION_ID.test(id))
        return reply
          .code(400)
          .send({ error: { code: 'INVALID_REQUEST', message: 'not a session id' } });
      o.audit.info(
        {
          audit: 'web.admin.action',
          action: 'end-session',
          sessionId: id,
          operator: who.operator,
          source: request.ip,
        },
        'operator ended a session',
      );
      return answer(reply, () => o.service.stop(id));
    });

    const admin = o.poolAdmin;
    if (!admin) return;
    const badRequest = (reply: FastifyReply, message: string) =>
      reply.code(400).send({ error: { code: 'INVALID_REQUEST', message } });
    const audited = (
      request: FastifyRequest,
      who: { operator: string },
      action: string,
      what: Record<string, unknown>,
    ) =>
      o.audit.info(
        { audit: 'web.admin.action', action, ...what, operator: who.operator, source: request.ip },
        `operator action: ${action}`,
      );

    app.post<{ Params: { flavor: string }; Body: { targetWarm?: unknown } | null }>(
      '/admin/flavors/:flavor/target',
      async (request, reply) => {
        const who = requireOperator(request, reply);
        if (!who) return reply;
        const { flavor } = request.params;
        if (!FLAVOR.test(flavor)) return badRequest(reply, 'not a flavor name');
        const raw = request.body?.targetWarm;
        // null: back to the configured target.
        if (raw === null) {
          audited(request, who, 'clear-target', { flavor });
          return answer(reply, () => admin.clearWarmTarget(flavor));
        }
        if (typeof raw !== 'number' || !Number.isInteger(raw))
          return badRequest(
            reply,
            'targetWarm must be a whole number (or null for the configured one)',
          );
        const target = raw;
        audited(request, who, 'set-target', { flavor, targetWarm: target });
        return answer(reply, () => admin.setWarmTarget(flavor, target));
      },
    );

    app.post<{ Params: { flavor: string } }>(
      '/admin/flavors/:flavor/drain',
      async (request, reply) => {
        const who = requireOperator(request, reply);
        if (!who) return reply;
        const { flavor } = request.params;
        if (!FLAVOR.test(flavor)) return badRequest(reply, 'not a flavor name');
        audited(request, who, 'drain', { flavor });
        return answer(reply, () => admin.drainFlavor(flavor));
      },
    );

    app.post<{ Params: { id: string } }>('/admin/envs/:id/delete', async (request, reply) => {
      const who = requireOperator(request, reply);
      if (!who) return reply;
      const { id } = request.params;
      if (!ENV_ID.test(id)) return badRequest(reply, 'not an env id');
      audited(request, who, 'delete-env', { envId: id });
      return answer(reply, () => admin.deleteFailedEnv(id));
    });
  };
}
