export {
  buildApi,
  startApi,
  type ApiHandle,
  type ApiOptions,
  type StartApiOptions,
} from './server.js';
export { STATUS_OF_CODE, type ApiErrorCode, type ApiOnlyErrorCode } from './errors.js';
export type { ErrorBody } from './schemas.js';
export type { KeyLinks } from './routes/keys.js';
export { ApiClient, ApiClientError, ApiUnreachableError, type ApiClientOptions } from './client.js';
