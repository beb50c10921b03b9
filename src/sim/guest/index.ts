export { startGuest, GuestSandboxError, checkGuestSandbox } from './server.js';
export { sandboxSupport, sandboxArgs, prepareGuestRoot, GUEST_TOOLS_DIR } from './sandbox.js';
export type { Guest, GuestOptions } from './server.js';
export {
  parseShellEnv,
  renderUserDataTemplate,
  writeFilesFromUserData,
  applyWriteFiles,
  type InstanceData,
  type WriteFile,
} from './cloudinit.js';
export { findKubectl } from './kubectl.js';
