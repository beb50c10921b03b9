import { z } from 'zod';
import { ENV_STATES } from '../events/index.js';
import type {
  CheckResult,
  EnvView,
  HintResult,
  PoolStatus,
  SessionView,
} from '../sessions/types.js';

/**
 * The API's shapes, declared once in zod: fastify validates requests and
 * serializes responses from the JSON Schema generated here, and handlers get
 * their TypeScript types from the same declaration.
 */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): object {
  const generated = z.toJSONSchema(schema, { target: 'draft-7', io }) as Record<string, unknown>;
  delete generated.$schema;
  return generated;
}

/** Slack-style user ids (`U024BE7LH`) or emails, as the service accepts them. */
export const studentId = z
  .string()
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]*$/);
/** Lab ids are DNS labels (they end up in names on the host cluster). */
export const labId = z
  .string()
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
export const sessionId = z
  .string()
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
/** Idempotency keys such as Slack trigger ids. */
export const requestId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._-]+$/);
export const flavorName = z
  .string()
  .max(63)
  .regex(/^[a-z0-9][a-z0-9.-]*$/);
/** OpenSSH public keys are a few hundred bytes; 8 KiB leaves room for 16384-bit RSA. */
export const publicKey = z.string().min(1).max(8192);
export const envState = z.enum(ENV_STATES);

/** What each field must look like, in words, for validation errors. */
export const FIELD_HINTS: Record<string, string> = {
  student: 'a Slack user id or an email: letters, digits and ._@+-, at most 128 characters',
  labId: 'a lab id: lowercase letters, digits and -, at most 63 characters',
  id: 'a session id such as s-k3x9q2ab7c',
  requestId: 'letters, digits and ._-, 1 to 128 characters',
  'idempotency-key': 'letters, digits and ._-, 1 to 128 characters',
  'x-labvirt-student': 'a Slack user id or an email, at most 128 characters',
  publicKey: 'an OpenSSH public key (one line, at most 8192 characters)',
  flavor: 'a flavor name such as v1.30-3node',
  state: `one of ${ENV_STATES.join(', ')}`,
};

export const errorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type ErrorBody = z.infer<typeof errorBody>;
/** Every route declares its error responses, so they are serialized like the rest. */
export const errorResponses = { '4xx': jsonSchema(errorBody), '5xx': jsonSchema(errorBody) };

const connection = z.object({
  mode: z.enum(['gateway', 'nodeport']),
  host: z.string(),
  port: z.number().int(),
  user: z.string(),
  command: z.string(),
  nodes: z.array(z.string()),
});

export const sessionView = z.object({
  id: z.string(),
  student: z.string(),
  labId: z.string(),
  labTitle: z.string(),
  labDescription: z.string().optional(),
  flavor: z.string(),
  state: z.enum(['waiting', 'claimed', 'preparing', 'active', 'ended']),
  envId: z.string().optional(),
  createdAt: z.string(),
  readyAt: z.string().optional(),
  expiresAt: z.string().optional(),
  maxExpiresAt: z.string().optional(),
  hintsUsed: z.number().int(),
  hintsTotal: z.number().int(),
  endedReason: z.enum(['released', 'expired', 'failed', 'cancelled']).optional(),
  endedAt: z.string().optional(),
  endedDetail: z.string().optional(),
  solvedAt: z.string().optional(),
  score: z.number().optional(),
  maxScore: z.number().optional(),
  connection: connection.optional(),
  nodeRestarts: z.array(z.object({ node: z.string(), at: z.string() })).optional(),
  queue: z.object({ position: z.number().int(), estimateSeconds: z.number() }).optional(),
  slow: z
    .object({
      message: z.string(),
      since: z.string(),
      step: z.string(),
      node: z.string(),
      retrySeconds: z.number(),
    })
    .optional(),
  ports: z
    .object({
      published: z.array(
        z.object({
          service: z.string(),
          port: z.number().int(),
          protocol: z.string(),
          studentNodePort: z.number().int(),
          hostNodePort: z.number().int(),
          address: z.string(),
        }),
      ),
      refused: z.array(
        z.object({
          service: z.string(),
          port: z.number().int(),
          protocol: z.string(),
          reason: z.string(),
          message: z.string(),
        }),
      ),
    })
    .optional(),
  privateKey: z.string().optional(),
});

export const checkResult = z.object({
  sessionId: z.string(),
  passed: z.boolean(),
  score: z.number(),
  maxScore: z.number(),
  checks: z.array(
    z.object({
      name: z.string(),
      description: z.string(),
      passed: z.boolean(),
      points: z.number(),
      messages: z.array(z.string()),
    }),
  ),
});

export const hintResult = z.object({
  sessionId: z.string(),
  index: z.number().int(),
  total: z.number().int(),
  text: z.string(),
});

export const flavorPoolStatus = z.object({
  flavor: z.string(),
  counts: z.record(envState, z.number().int()),
  minWarm: z.number().int(),
  targetWarm: z.number().int(),
  maxTotal: z.number().int(),
  waiting: z.number().int(),
  capacityBlocked: z.boolean(),
  capacityReason: z.string().optional(),
  scheduledTargets: z.array(
    z.object({
      name: z.string(),
      minWarm: z.number().int(),
      from: z.string(),
      until: z.string(),
    }),
  ),
  /** The runtime target an operator set; it wins over minWarm and schedules until cleared. */
  targetOverride: z.number().int().optional(),
});

export const poolStatus = z.object({ flavors: z.array(flavorPoolStatus) });

export const envView = z.object({
  id: z.string(),
  namespace: z.string(),
  flavor: z.string(),
  state: envState,
  createdAt: z.string(),
  sessionId: z.string().optional(),
  student: z.string().optional(),
  labId: z.string().optional(),
  expiresAt: z.string().optional(),
});

export const labSummary = z.object({
  id: z.string(),
  title: z.string(),
  flavor: z.string(),
  difficulty: z.string(),
  timeLimitMinutes: z.number(),
});

export const health = z.object({
  ok: z.boolean(),
  checks: z.record(z.string(), z.object({ ok: z.boolean(), detail: z.string().optional() })),
});

// The declarations above must describe exactly the service's types; these
// lines stop compiling when the contract in src/sessions/types.ts moves.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const assertSame = <T extends true>(): T => true as T;
assertSame<Same<z.infer<typeof sessionView>, SessionView>>();
assertSame<Same<z.infer<typeof checkResult>, CheckResult>>();
assertSame<Same<z.infer<typeof hintResult>, HintResult>>();
assertSame<Same<z.infer<typeof poolStatus>, PoolStatus>>();
assertSame<Same<z.infer<typeof envView>, EnvView>>();
