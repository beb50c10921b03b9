export { startGuest, GuestSandboxError, checkGuestSandbox } from './server.js';
export { sandboxSupport } from './sandbox.js';
export type { Guest, GuestOptions } from './server.js';
export {
  parseShellEnv,
  writeFilesFromUserData,
  applyWriteFiles,
  type WriteFile,
} from './cloudinit.js';
export { findKubectl } from './kubectl.js';
