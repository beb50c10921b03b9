export { loadLab, loadLabs, shownPath } from './load.js';
export { formatProblems } from './problems.js';
export { validateLabs, type LabsValidation, type ValidateLabsOptions } from './validate.js';
export { findShellcheck } from './shellcheck.js';
export { scaffoldLab, ScaffoldError, type ScaffoldOptions } from './scaffold.js';
export { labSchema, NODE_SELECTORS, DIFFICULTIES, GUEST_USERS } from './schema.js';
export type {
  Difficulty,
  GuestUser,
  Lab,
  LabCheck,
  LabProblem,
  LabScript,
  LabScriptSet,
  LabWrongFix,
  Labs,
  LoadLabsOptions,
  NodeSelector,
} from './types.js';
