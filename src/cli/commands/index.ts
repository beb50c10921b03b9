import type { Command } from 'commander';
import { registerClientCommands } from './client.js';
import { registerConfigCommands } from './config.js';
import { registerDoctorCommand } from './doctor.js';
import { registerImagesCommands } from './images.js';
import { registerLabsCommands } from './labs.js';
import { registerLabTestCommand } from './labtest.js';
import { registerRenderCommand } from './render.js';
import { registerServeCommands } from './serve.js';
import { registerSimCommand } from './sim.js';
import { registerSlackCommands } from './slack.js';
import { registerWebCommands } from './web.js';

/**
 * Every command group registers itself here, one line each. Keep the groups in
 * their own files so features do not collide.
 */
export function registerCommands(program: Command): void {
  registerConfigCommands(program);
  registerServeCommands(program);
  registerSimCommand(program);
  registerRenderCommand(program);
  registerLabsCommands(program);
  // After the `labs` group (validate, list) so `test` joins it.
  registerLabTestCommand(program);
  registerClientCommands(program);
  registerSlackCommands(program);
  registerDoctorCommand(program);
  registerImagesCommands(program);
  registerWebCommands(program);
}
