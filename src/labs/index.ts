export { loadLab, loadLabs } from './load.js';
export { formatProblems } from './problems.js';
export { labSchema, NODE_SELECTORS, DIFFICULTIES, GUEST_USERS } from './schema.js';
export type {
  Difficulty,
  GuestUser,
  Lab,
  LabCheck,
  LabProblem,
  LabScript,
  LabScriptSet,
  Labs,
  LoadLabsOptions,
  NodeSelector,
} from './types.js';
