import type { ApiHandle, StartApiOptions } from './server.js';

export type { ApiHandle, ApiOptions, StartApiOptions } from './server.js';
export type { ApiErrorCode, ApiOnlyErrorCode } from './errors.js';
export type { ErrorBody } from './schemas.js';
export type { KeyLinks } from './routes/keys.js';
export type { ApiLimits } from './limits.js';
export type { SessionUpdates } from './routes/session-wait.js';
export { sessionProgress } from './progress.js';
export {
  ApiClient,
  ApiClientError,
  ApiUnreachableError,
  type ApiClientOptions,
  type StatusWait,
} from './client.js';

/**
 * Starts the HTTP API. The server (fastify, its plugins, the schemas) loads
 * on first use: the CLI's client commands import this folder for the
 * ApiClient alone and must start in a blink.
 */
export async function startApi(options: StartApiOptions): Promise<ApiHandle> {
  const server = await import('./server.js');
  return server.startApi(options);
}
