export { directResolver, fileResolver, UnknownGuestError, type GuestResolver } from './resolver.js';
export {
  fileKeyStore,
  fingerprint,
  generateKeyPair,
  loadOrCreateHostKey,
  matchKey,
  parseAuthorizedKey,
  publicLine,
  type KeyStore,
  type LoadedKey,
  type PublicKeyAttempt,
} from './keys.js';
export { HostKeyMismatchError, type EnvIdentitySource, type EnvSshIdentity } from './hostkeys.js';
export { ENV_NAME, InvalidEnvError } from './bundle.js';
export {
  createExecutor,
  type ConnectRetry,
  type ExecOptions,
  type ExecResult,
  type Executor,
  type ExecutorOptions,
  type GuestTarget,
  type NodeName,
} from './executor.js';
export {
  GatewayRefusal,
  NOTICES_SUBSYSTEM,
  type Gateway,
  type GatewayOptions,
  type GatewaySession,
  type LocalChannel,
  type LocalPty,
  type LocalSession,
  type SessionDirectory,
} from './gateway-api.js';
export { startGateway } from './gateway.js';
export { TERMINAL_BYTES_CHANNEL, type TerminalBytes } from './student-connection.js';
export { GUEST_KEX, guestAlgorithms } from './algorithms.js';
