import type { Command } from 'commander';
import { registerConfigCommands } from './config.js';

/**
 * Every command group registers itself here, one line each. Keep the groups in
 * their own files so features do not collide.
 */
export function registerCommands(program: Command): void {
  registerConfigCommands(program);
}
