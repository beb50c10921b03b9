/** Where a step runs: one node by name, every worker, or every node. */
export type NodeSelector = 'control-plane' | 'worker-1' | 'worker-2' | 'all-workers' | 'all';
export type GuestUser = 'root' | 'student';
export type Difficulty = 'easy' | 'medium' | 'hard';

/** One script of a lab, read at load time so callers never touch the filesystem again. */
export interface LabScript {
  /** Path of the script relative to the labs dir, e.g. `broken-coredns/setup.sh` (for messages). */
  file: string;
  node: NodeSelector;
  user: GuestUser;
  timeoutSeconds: number;
  /** The script's text (starts with a bash shebang). */
  content: string;
}

/** A graded check: exit 0 = passed; `FAIL:` lines it prints are shown to the student. */
export interface LabCheck extends LabScript {
  name: string;
  description: string;
  points: number;
}

/**
 * A shortcut that must not pass: applied after setup on a fresh env, the
 * checks must still fail (`labvirt labs test`).
 */
export interface LabWrongFix extends LabScript {
  name: string;
  description: string;
}

export interface LabScriptSet {
  setup: LabScript[];
  prepare: LabScript[];
  checks: LabCheck[];
  solve: LabScript[];
  wrongFixes: LabWrongFix[];
}

export interface Lab extends LabScriptSet {
  id: string;
  title: string;
  /** Markdown shown to the student at start. */
  description: string;
  difficulty: Difficulty;
  /** Resolved flavor name, e.g. `v1.30-3node`. */
  flavor: string;
  kubernetes: string;
  nodes: 1 | 3;
  timeLimitMinutes: number;
  /** Ordered from gentle to explicit. */
  hints: string[];
  tags: string[];
  /** Sum of the points of every check. */
  totalPoints: number;
  /**
   * Fixture-friendly replacements used only on the simulated cluster. Always
   * complete (prepare, solve and wrongFixes default to empty), never mixed
   * with the real scripts.
   */
  sim?: LabScriptSet;
  /** Absolute path of the lab folder. */
  dir: string;
}

/** Labs by id. */
export type Labs = ReadonlyMap<string, Lab>;

/** One thing wrong with a lab, with what to do about it. */
export interface LabProblem {
  /** Path as seen from the current directory, e.g. `labs/broken-coredns/lab.yaml` (absolute when outside it). */
  file: string;
  /** Dotted path of the field, e.g. `checks.0.points`; empty for the whole file. */
  field: string;
  message: string;
  suggestion: string;
}

export interface LoadLabsOptions {
  /** Flavor names the configuration knows, e.g. `Object.keys(config.flavors)`. */
  flavors: string[];
  /**
   * `sessions.maxMinutes` of the configuration: a lab whose time limit is
   * longer is refused (its sessions would be cut off early). Unchecked when
   * absent.
   */
  maxSessionMinutes?: number;
}

/** A script file as read from disk (also for labs with problems), for linting. */
export interface LabScriptFile {
  /** Absolute path. */
  path: string;
  /** As problems show it (see `shownPath`). */
  shown: string;
  content: string;
}
