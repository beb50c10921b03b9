export { startGuest } from './server.js';
export type { Guest, GuestOptions } from './server.js';
