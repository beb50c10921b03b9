import { z } from 'zod';

/**
 * The shape of `lab.yaml`. Messages are produced by `describeIssue` in
 * problems.ts, so the schema stays free of wording.
 */
export const NODE_SELECTORS = [
  'control-plane',
  'worker-1',
  'worker-2',
  'all-workers',
  'all',
] as const;
export const DIFFICULTIES = ['easy', 'medium', 'hard'] as const;
export const GUEST_USERS = ['root', 'student'] as const;

export const DEFAULT_STEP_TIMEOUT_SECONDS = 300;
export const DEFAULT_CHECK_TIMEOUT_SECONDS = 60;
export const MAX_TIMEOUT_SECONDS = 3600;

const scriptPath = z.string().min(1);
const timeout = (fallback: number) =>
  z.number().int().min(1).max(MAX_TIMEOUT_SECONDS).default(fallback);

export const stepSchema = z.strictObject({
  node: z.enum(NODE_SELECTORS),
  script: scriptPath,
  user: z.enum(GUEST_USERS).default('root'),
  timeoutSeconds: timeout(DEFAULT_STEP_TIMEOUT_SECONDS),
});

export const checkSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
  description: z.string().min(1),
  points: z.number().int().min(1).max(100),
  node: z.enum(NODE_SELECTORS),
  script: scriptPath,
  user: z.enum(GUEST_USERS).default('root'),
  timeoutSeconds: timeout(DEFAULT_CHECK_TIMEOUT_SECONDS),
});

/**
 * A shortcut a student might take instead of the real fix (relabel the pods
 * instead of fixing the Service, delete the pod that proves the policy
 * works). `labvirt labs test` runs each on a freshly set-up env and asserts
 * the checks still fail.
 */
export const wrongFixSchema = z.strictObject({
  name: checkSchema.shape.name,
  description: z.string().min(1),
  node: z.enum(NODE_SELECTORS),
  script: scriptPath,
  user: z.enum(GUEST_USERS).default('root'),
  timeoutSeconds: timeout(DEFAULT_STEP_TIMEOUT_SECONDS),
});

const steps = z.array(stepSchema);

/**
 * The sim never falls back to the real scripts (they need kubectl and
 * systemd), so a sim variant is complete: setup and checks are required and
 * prepare/solve default to nothing.
 */
export const simSchema = z.strictObject({
  setup: steps.min(1),
  prepare: steps.default([]),
  checks: z.array(checkSchema).min(1),
  solve: steps.default([]),
  wrongFixes: z.array(wrongFixSchema).default([]),
});

export const labSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/),
  title: z.string().min(1).max(120),
  description: z.string().min(1),
  difficulty: z.enum(DIFFICULTIES),
  flavor: z.strictObject({
    kubernetes: z.string().regex(/^1\.[0-9]{2}$/),
    nodes: z.union([z.literal(1), z.literal(3)]),
  }),
  timeLimitMinutes: z.number().int().min(5).max(480),
  hints: z.array(z.string().min(1)).min(1),
  tags: z.array(z.string().min(1)).default([]),
  setup: steps.min(1),
  prepare: steps.optional(),
  checks: z.array(checkSchema).min(1),
  solve: steps.optional(),
  wrongFixes: z.array(wrongFixSchema).optional(),
  sim: simSchema.optional(),
});

export type LabFile = z.output<typeof labSchema>;
export type StepEntry = z.output<typeof stepSchema>;
export type CheckEntry = z.output<typeof checkSchema>;
export type WrongFixEntry = z.output<typeof wrongFixSchema>;

/** Every key lab.yaml knows, for "did you mean" suggestions. */
export const KNOWN_KEYS: readonly string[] = [
  ...Object.keys(labSchema.shape),
  ...Object.keys(checkSchema.shape),
  'kubernetes',
  'nodes',
];
