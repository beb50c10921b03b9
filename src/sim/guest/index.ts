export { startGuest } from './server.js';
export type { Guest, GuestOptions } from './server.js';
export {
  parseShellEnv,
  writeFilesFromUserData,
  applyWriteFiles,
  type WriteFile,
} from './cloudinit.js';
