import type { EnvState } from '../events/index.js';
import type {
  CheckResult,
  EnvView,
  HintResult,
  PoolStatus,
  SessionView,
  StartRequest,
} from '../sessions/types.js';
import type { ErrorBody } from './schemas.js';

export interface ApiClientOptions {
  /** e.g. `http://127.0.0.1:8080` */
  url: string;
  token: string;
  /** Sent as `X-Labvirt-Student`: act on behalf of this student. */
  asStudent?: string;
  /** Per-request timeout; default 60 s. Checks get at least 10 minutes: they run scripts in the VMs. */
  timeoutMs?: number;
}

/** What a waiting client has seen of a session, and how long the server may hold the answer. */
export interface StatusWait {
  /** `sessionProgress` of the view the client has. */
  after: string;
  /** 0–60; the server answers with the view as it is when this is over. */
  seconds: number;
}

/** The API answered with its error shape (or something that is not it). */
export class ApiClientError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ApiClientError';
  }
}

/** Nothing answered at the URL (refused, unknown host, timeout). */
export class ApiUnreachableError extends Error {
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super(`cannot reach the labvirt API at ${url}: ${reason}`);
    this.name = 'ApiUnreachableError';
  }
}

const CHECK_TIMEOUT_MS = 10 * 60_000;

/** A small typed client of labvirt's HTTP API (used by the CLI; fine for scripts too). */
export class ApiClient {
  private readonly base: string;

  constructor(private readonly options: ApiClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
  }

  start(request: StartRequest): Promise<SessionView> {
    return this.call('POST', '/v1/sessions', request);
  }
  stop(id: string): Promise<SessionView> {
    return this.call('DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
  }
  extend(id: string): Promise<SessionView> {
    return this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/extend`);
  }
  /**
   * The session; with `wait`, a long poll: the answer comes once the
   * session's progress (`sessionProgress`) differs from `wait.after`,
   * or after `wait.seconds` as it is then.
   */
  status(id: string, wait?: StatusWait): Promise<SessionView> {
    const path = `/v1/sessions/${encodeURIComponent(id)}`;
    if (!wait) return this.call('GET', path);
    const q = new URLSearchParams({ after: wait.after, waitSeconds: String(wait.seconds) });
    return this.call('GET', `${path}?${q}`, undefined, wait.seconds * 1000 + 30_000);
  }
  async list(filter: { student?: string; includeEnded?: boolean } = {}): Promise<SessionView[]> {
    const q = new URLSearchParams();
    if (filter.student) q.set('student', filter.student);
    if (filter.includeEnded) q.set('includeEnded', 'true');
    const body = await this.call<{ sessions: SessionView[] }>('GET', `/v1/sessions${query(q)}`);
    return body.sessions;
  }
  check(id: string): Promise<CheckResult> {
    return this.call(
      'POST',
      `/v1/sessions/${encodeURIComponent(id)}/check`,
      undefined,
      CHECK_TIMEOUT_MS,
    );
  }
  /** A single-use link that opens the session's page (terminal in the browser). */
  webLink(id: string): Promise<{ sessionId: string; url: string; expiresAt: string }> {
    return this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/web-link`);
  }
  hint(id: string): Promise<HintResult> {
    return this.call('POST', `/v1/sessions/${encodeURIComponent(id)}/hint`);
  }
  poolStatus(): Promise<PoolStatus> {
    return this.call('GET', '/v1/pool');
  }
  async listEnvs(filter: { flavor?: string; state?: EnvState } = {}): Promise<EnvView[]> {
    const q = new URLSearchParams();
    if (filter.flavor) q.set('flavor', filter.flavor);
    if (filter.state) q.set('state', filter.state);
    return (await this.call<{ envs: EnvView[] }>('GET', `/v1/envs${query(q)}`)).envs;
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    minTimeoutMs = 0,
  ): Promise<T> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.options.token}`,
      accept: 'application/json',
    };
    if (this.options.asStudent) headers['x-labvirt-student'] = this.options.asStudent;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(Math.max(this.options.timeoutMs ?? 60_000, minTimeoutMs)),
      });
    } catch (err) {
      throw new ApiUnreachableError(this.base, reasonOf(err));
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (response.ok) return parsed as T;
    const error = (parsed as ErrorBody | undefined)?.error;
    if (error && typeof error.code === 'string') {
      throw new ApiClientError(response.status, error.code, error.message, error.details);
    }
    throw new ApiClientError(
      response.status,
      'HTTP_' + response.status,
      `unexpected HTTP ${response.status} from ${this.base}${path} (is this a labvirt API?)`,
    );
  }
}

function query(q: URLSearchParams): string {
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** undici hides the socket error in `cause`; surface the useful part. */
function reasonOf(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return 'timed out';
  if (e.cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (e.cause?.code === 'ENOTFOUND') return 'unknown host';
  return e.cause?.message ?? e.message ?? String(err);
}
