import { join } from 'node:path';

/** The fixture labs the tests' stacks load (a module of its own: no app imports). */
export const FIXTURE_LABS = join(import.meta.dirname, '..', 'fixtures', 'labs');
