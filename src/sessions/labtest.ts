import type { LabvirtHandle } from '../app/index.js';
import type { LabScript } from '../labs/index.js';
import { envNamespace } from '../kube/index.js';
import { envNodes, nodesOfFlavor } from '../pool/nodes.js';
import { labScripts, runChecksDetailed, runSteps, type CheckRun } from './scripts.js';
import type { SessionView } from './types.js';

export interface LabTestStep {
  name: string;
  ok: boolean;
  detail: string;
  ms: number;
  /** The lab's script files this step ran (e.g. `netpol-blocking/sim/solve.sh`). */
  scripts: string[];
}

export interface LabTestReport {
  labId: string;
  ok: boolean;
  /**
   * Which of the lab's scripts ran: its `sim` variant (the real scripts did
   * not run at all) or its real ones.
   */
  variant: 'sim' | 'real';
  steps: LabTestStep[];
}

export interface LabTestOptions {
  /** Per env: how long it may take to become ready. */
  timeoutMs?: number;
  student?: string;
}

type Scripts = ReturnType<typeof labScripts>;

/**
 * What a lab author needs to trust a lab. On a fresh env, right after setup
 * every check must fail and say why with a `FAIL:` line; after the solve
 * scripts every check must pass; solving again changes nothing (idempotent).
 * Then each wrong fix gets a fresh env of its own: setup, the shortcut, and
 * the checks must still fail. Every env is torn down in every case.
 */
export async function testLab(
  handle: LabvirtHandle,
  labId: string,
  options: LabTestOptions = {},
): Promise<LabTestReport> {
  const lab = handle.context.labs.get(labId);
  if (!lab) {
    return {
      labId,
      ok: false,
      variant: handle.context.config.labScripts === 'sim' ? 'sim' : 'real',
      steps: [{ name: 'load', ok: false, detail: `no lab ${labId}`, ms: 0, scripts: [] }],
    };
  }
  const scripts = labScripts(lab, handle.context.config.labScripts);
  const steps: LabTestStep[] = [];
  const run = new EnvRun(handle, labId, scripts, steps, options);
  let ok = await run.inFreshEnv('', async () => {
    return (
      (await run.step('check fails right after setup', files(scripts.checks), () =>
        run.checksMustFail(),
      )) &&
      (await run.step('solve', files(scripts.solve), async () => {
        if (scripts.solve.length === 0) throw new Error('the lab has no solve scripts');
        await run.runScripts(scripts.solve);
        return `${scripts.solve.length} script(s) ran`;
      })) &&
      (await run.step('check passes after solve', files(scripts.checks), () =>
        run.checksMustPass(),
      )) &&
      (await run.step(
        'solve again and check again (idempotent)',
        files([...scripts.solve, ...scripts.checks]),
        async () => {
          await run.runScripts(scripts.solve);
          return run.checksMustPass();
        },
      ))
    );
  });
  for (const wrong of scripts.wrongFixes) {
    const label = `wrong fix ${wrong.name}`;
    const fixOk = await run.inFreshEnv(`${label}: `, () =>
      run.step(
        `${label}: the checks still fail after "${wrong.description}"`,
        files([wrong, ...scripts.checks]),
        async () => {
          await run.runScripts([wrong]);
          return run.checksMustFail(`the wrong fix "${wrong.description}"`);
        },
      ),
    );
    ok = ok && fixOk;
  }
  return { labId, ok, variant: scripts.variant, steps };
}

function files(scripts: readonly LabScript[]): string[] {
  return [...new Set(scripts.map((s) => s.file))];
}

/** One lab's test: claims envs, runs scripts and checks on them, records steps. */
class EnvRun {
  private session: SessionView | undefined;

  constructor(
    private readonly handle: LabvirtHandle,
    private readonly labId: string,
    private readonly scripts: Scripts,
    private readonly steps: LabTestStep[],
    private readonly options: LabTestOptions,
  ) {}

  async step(name: string, scripts: string[], fn: () => Promise<string>): Promise<boolean> {
    const started = Date.now();
    try {
      const detail = await fn();
      this.steps.push({ name, ok: true, detail, ms: Date.now() - started, scripts });
      return true;
    } catch (err) {
      const detail = (err as Error).message;
      this.steps.push({ name, ok: false, detail, ms: Date.now() - started, scripts });
      return false;
    }
  }

  /** Claims an env (setup and prepare run at claim), runs `body`, tears the env down. */
  async inFreshEnv(prefix: string, body: () => Promise<boolean>): Promise<boolean> {
    const { service } = this.handle;
    const timeoutMs = this.options.timeoutMs ?? 15 * 60_000;
    this.session = undefined;
    const claimed = await this.step(
      `${prefix}claim an env and run setup`,
      files([...this.scripts.setup, ...this.scripts.prepare]),
      async () => {
        let session = await service.start({
          student: this.options.student ?? `labtest-${this.labId}`.slice(0, 60),
          labId: this.labId,
          requestId: `labtest-${this.labId}-${Date.now()}`,
        });
        this.session = session;
        await this.handle.runMaintenance('replenish');
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          session = await service.status(session.id);
          if (session.state === 'active') break;
          if (session.state === 'ended') throw new Error(`session ended: ${session.endedReason}`);
          if (Date.now() > deadline) {
            throw new Error(`not ready after ${timeoutMs} ms (${session.state})`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        this.session = session;
        return `env ${session.envId} ready`;
      },
    );
    try {
      return claimed && (await body());
    } finally {
      const session = this.session as SessionView | undefined;
      if (session) {
        await this.step(`${prefix}tear down`, [], async () => {
          await service.stop(session.id);
          return 'released';
        });
      }
    }
  }

  private async runContext() {
    const ctx = this.handle.context;
    const session = this.session!;
    const envId = session.envId!;
    const lab = ctx.labs.get(this.labId)!;
    const env = await ctx.store.getEnv(envId);
    const nodes = await envNodes(
      ctx.cluster,
      envNamespace(ctx.config, envId),
      nodesOfFlavor(ctx.config, env?.flavor ?? lab.flavor),
    );
    return {
      executor: ctx.executor,
      envId,
      nodes,
      env: { LAB_ID: this.labId, LAB_SESSION: session.id },
    };
  }

  async runScripts(scripts: LabScript[]): Promise<void> {
    await runSteps(await this.runContext(), scripts);
  }

  private async grade(): Promise<CheckRun[]> {
    return runChecksDetailed(await this.runContext(), this.scripts.checks);
  }

  /** Some check fails, and every failing check says why. */
  async checksMustFail(after?: string): Promise<string> {
    const results = await this.grade();
    if (results.every((c) => c.passed)) {
      throw new Error(
        after
          ? `${after} passes every check (${score(results)}): the checks must refuse this shortcut`
          : `every check passes although nothing was fixed (${score(results)})`,
      );
    }
    assertExplained(results);
    return describe(results);
  }

  async checksMustPass(): Promise<string> {
    const results = await this.grade();
    if (!results.every((c) => c.passed)) {
      assertExplained(results);
      throw new Error(describe(results));
    }
    return describe(results);
  }
}

function assertExplained(results: CheckRun[]): void {
  const silent = results.filter((c) => c.silent).map((c) => c.name);
  if (silent.length > 0) {
    throw new Error(
      `check(s) ${silent.join(', ')} failed without printing a FAIL: line: the student would read only "not solved yet"`,
    );
  }
}

function score(results: CheckRun[]): string {
  const got = results.reduce((n, c) => n + c.points, 0);
  return `${got} points`;
}

function describe(results: CheckRun[]): string {
  const failed = results.filter((c) => !c.passed);
  const passed = results.length - failed.length;
  return (
    `${passed}/${results.length} checks pass, ${score(results)}` +
    (failed.length > 0
      ? `: ${failed
          .flatMap((c) => c.messages.map((m) => `${c.name}: ${m}`))
          .slice(0, 5)
          .join('; ')}`
      : '')
  );
}

export function formatLabTestReport(report: LabTestReport): string {
  const ran =
    report.variant === 'sim'
      ? "ran the lab's sim scripts; its real scripts did not run"
      : "ran the lab's real scripts";
  const lines = [`${report.ok ? 'PASS' : 'FAIL'} ${report.labId} (${ran})`];
  for (const s of report.steps) {
    // A multi-line FAIL: message keeps its lines, indented under its step.
    const detail = s.detail.replace(/\n/g, '\n      ');
    lines.push(`  ${s.ok ? '✓' : '✗'} ${s.name} (${s.ms} ms)${detail ? ` — ${detail}` : ''}`);
    if (s.scripts.length > 0) lines.push(`      ${report.variant}: ${s.scripts.join(', ')}`);
  }
  return lines.join('\n');
}
