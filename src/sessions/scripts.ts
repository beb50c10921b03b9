import type { Lab, LabCheck, LabScript } from '../labs/index.js';
import type { EnvNode } from '../pool/nodes.js';
import type { Executor } from '../ssh/index.js';
import type { CheckOutcome } from './types.js';

export type ScriptVariant = 'standard' | 'sim';

/** The scripts of a lab for the configured variant (the sim's fixture-friendly ones when asked). */
export function labScripts(lab: Lab, variant: ScriptVariant) {
  const sim = variant === 'sim' ? lab.sim : undefined;
  return {
    /** Which scripts these are: the sim variant's, or the real ones (also when a lab has no sim variant). */
    variant: sim ? ('sim' as const) : ('real' as const),
    setup: sim?.setup ?? lab.setup,
    prepare: sim?.prepare ?? lab.prepare ?? [],
    checks: sim?.checks ?? lab.checks,
    solve: sim?.solve ?? lab.solve ?? [],
    wrongFixes: sim?.wrongFixes ?? lab.wrongFixes ?? [],
  };
}

/** Which env nodes a step's `node` selector means. */
export function selectNodes(selector: string, nodes: EnvNode[]): EnvNode[] {
  switch (selector) {
    case 'all':
      return nodes;
    case 'all-workers':
      return nodes.filter((n) => n.node !== 'control-plane');
    default:
      return nodes.filter((n) => n.node === selector);
  }
}

export interface StepFailure {
  file: string;
  node: string;
  exitCode: number | null;
  timedOut: boolean;
  /** The time the step was given on this try. */
  timeoutSeconds: number;
  output: string;
}

export class ScriptFailedError extends Error {
  constructor(readonly failure: StepFailure) {
    super(
      `${failure.file} on ${failure.node} ${
        failure.timedOut
          ? `timed out after ${failure.timeoutSeconds} s`
          : `exited ${failure.exitCode ?? 'by signal'}`
      }: ${failure.output.slice(-500)}`,
    );
    this.name = 'ScriptFailedError';
  }
}

/**
 * Patience with a slow guest, shared by every step of one run (setup, then
 * prepare). A step that runs out of time is not a broken env: the guest may
 * be slow (a class starting at once on busy hosts). The first time a step
 * times out it runs again on the same node with `factor` times its timeout,
 * and every later step of the run gets the same factor; a second timeout
 * fails the run. Lab scripts are idempotent (`labvirt labs test` runs setup
 * twice), so running a killed step again is safe.
 */
export class SlowGuestPatience {
  private slow = false;

  constructor(
    readonly factor: number,
    /** Awaited before the step runs again (e.g. to record that the session is slow). */
    private readonly onSlow: (failure: StepFailure, retrySeconds: number) => void | Promise<void>,
  ) {}

  /** Whether a step of this run has timed out already. */
  get extended(): boolean {
    return this.slow;
  }

  timeoutSeconds(step: Pick<LabScript, 'timeoutSeconds'>): number {
    return this.slow ? step.timeoutSeconds * this.factor : step.timeoutSeconds;
  }

  /** The longer timeout to run the step again with, once per run; undefined after that. */
  async retryAfterTimeout(
    failure: StepFailure,
    step: Pick<LabScript, 'timeoutSeconds'>,
  ): Promise<number | undefined> {
    if (this.slow) return undefined;
    this.slow = true;
    const retrySeconds = step.timeoutSeconds * this.factor;
    await this.onSlow(failure, retrySeconds);
    return retrySeconds;
  }
}

export interface RunContext {
  executor: Executor;
  envId: string;
  nodes: EnvNode[];
  /** Passed to every script as environment variables (never as shell text). */
  env: Record<string, string>;
}

/**
 * Runs steps in order, each on the nodes it names; the first failure stops
 * the run. With `patience`, a step that times out gets one more, longer try
 * (see {@link SlowGuestPatience}); without it a timeout fails at once.
 */
export async function runSteps(
  ctx: RunContext,
  steps: LabScript[],
  patience?: SlowGuestPatience,
): Promise<void> {
  for (const step of steps) {
    const targets = selectNodes(step.node, ctx.nodes);
    if (targets.length === 0) throw new Error(`${step.file}: no node matches "${step.node}"`);
    for (const target of targets) {
      let timeoutSeconds = patience?.timeoutSeconds(step) ?? step.timeoutSeconds;
      for (;;) {
        const result = await ctx.executor.exec(
          { envId: ctx.envId, node: target.node, ip: target.ip },
          step.content,
          { env: ctx.env, timeoutMs: timeoutSeconds * 1000, runAs: step.user },
        );
        if (result.exitCode === 0 && !result.timedOut) break;
        const failure: StepFailure = {
          file: step.file,
          node: target.node,
          exitCode: result.exitCode,
          timedOut: result.timedOut,
          timeoutSeconds,
          output: `${result.stdout}\n${result.stderr}`.trim(),
        };
        const retrySeconds = result.timedOut
          ? await patience?.retryAfterTimeout(failure, step)
          : undefined;
        if (retrySeconds === undefined) throw new ScriptFailedError(failure);
        timeoutSeconds = retrySeconds;
      }
    }
  }
}

/** One check's outcome, plus what `labvirt labs test` needs to judge the check itself. */
export interface CheckRun extends CheckOutcome {
  /** It failed by exiting non-zero on some node without printing a `FAIL:` line. */
  silent: boolean;
}

/**
 * Runs each check and collects what the student should read: the lines a
 * failing check printed with `FAIL:`, or a plain reason when it could not run
 * at all (never a bare "wrong").
 */
export async function runChecks(ctx: RunContext, checks: LabCheck[]): Promise<CheckOutcome[]> {
  return (await runChecksDetailed(ctx, checks)).map(({ silent: _silent, ...outcome }) => outcome);
}

/** `runChecks`, also telling which failing checks printed no `FAIL:` line. */
export async function runChecksDetailed(ctx: RunContext, checks: LabCheck[]): Promise<CheckRun[]> {
  const outcomes: CheckRun[] = [];
  for (const check of checks) {
    const targets = selectNodes(check.node, ctx.nodes);
    let passed = targets.length > 0;
    let silent = false;
    const messages: string[] = [];
    for (const target of targets) {
      try {
        const result = await ctx.executor.exec(
          { envId: ctx.envId, node: target.node, ip: target.ip },
          check.content,
          { env: ctx.env, timeoutMs: check.timeoutSeconds * 1000, runAs: check.user ?? 'root' },
        );
        if (result.timedOut) {
          passed = false;
          messages.push(
            `the check did not finish within ${check.timeoutSeconds}s on ${target.node}`,
          );
        } else if (result.exitCode !== 0) {
          passed = false;
          const fails = failMessages(result.stdout + '\n' + result.stderr);
          if (fails.length === 0) silent = true;
          messages.push(
            ...(fails.length > 0 ? fails : [`${check.description || check.name}: not solved yet`]),
          );
        }
      } catch (err) {
        passed = false;
        messages.push(
          `could not run the check on ${target.node} (${(err as Error).message}); this is not your fault — try again`,
        );
      }
    }
    outcomes.push({
      name: check.name,
      description: check.description,
      points: passed ? check.points : 0,
      passed,
      messages,
      silent,
    });
  }
  return outcomes;
}

/**
 * The messages a check printed for the student: each line starting with
 * `FAIL:` begins one, and the indented lines right after it (a space or a
 * tab first) continue it, so a check can show a listing under its reason:
 *
 *     echo "FAIL: these pods are not Running:"
 *     kubectl get pods --no-headers | sed 's/^/  /'
 */
export function failMessages(output: string): string[] {
  const messages: string[][] = [];
  let current: string[] | undefined;
  for (const line of output.split('\n')) {
    const trimmed = line.trim();
    if (trimmed.startsWith('FAIL:')) {
      current = [trimmed.slice('FAIL:'.length).trim()];
      messages.push(current);
    } else if (current && /^[ \t]/.test(line) && trimmed !== '') {
      current.push(line.replace(/\s+$/, ''));
    } else {
      current = undefined;
    }
  }
  return messages
    .map((lines) => lines.join('\n'))
    .filter((m) => m.length > 0)
    .slice(0, 20);
}
