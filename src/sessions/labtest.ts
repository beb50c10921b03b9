import type { LabvirtHandle } from '../app/index.js';
import { envNamespace } from '../kube/index.js';
import { envNodes, nodesOfFlavor } from '../pool/nodes.js';
import { labScripts, runSteps } from './scripts.js';
import type { CheckResult, SessionView } from './types.js';

export interface LabTestStep {
  name: string;
  ok: boolean;
  detail: string;
  ms: number;
}

export interface LabTestReport {
  labId: string;
  ok: boolean;
  steps: LabTestStep[];
}

/**
 * What a lab author needs to trust a lab: on a fresh env, right after setup
 * the check must fail; after the solve scripts it must pass; solving again
 * changes nothing (idempotent). The env is torn down in every case.
 */
export async function testLab(
  handle: LabvirtHandle,
  labId: string,
  options: { timeoutMs?: number; student?: string } = {},
): Promise<LabTestReport> {
  const steps: LabTestStep[] = [];
  const timeoutMs = options.timeoutMs ?? 15 * 60_000;
  const ctx = handle.context;
  const lab = ctx.labs.get(labId);
  if (!lab)
    return {
      labId,
      ok: false,
      steps: [{ name: 'load', ok: false, detail: `no lab ${labId}`, ms: 0 }],
    };
  const scripts = labScripts(lab, ctx.config.labScripts);
  let session: SessionView | undefined;

  const step = async (name: string, fn: () => Promise<string>): Promise<boolean> => {
    const started = Date.now();
    try {
      const detail = await fn();
      steps.push({ name, ok: true, detail, ms: Date.now() - started });
      return true;
    } catch (err) {
      steps.push({ name, ok: false, detail: (err as Error).message, ms: Date.now() - started });
      return false;
    }
  };
  const check = () => handle.service.check(session!.id);
  const describe = (r: CheckResult) =>
    `${r.score}/${r.maxScore} points` +
    (r.passed
      ? ''
      : `: ${r.checks
          .flatMap((c) => c.messages)
          .slice(0, 3)
          .join('; ')}`);

  try {
    const ok =
      (await step('claim an env and run setup', async () => {
        session = await handle.service.start({
          student: options.student ?? `labtest-${labId}`.slice(0, 60),
          labId,
          requestId: `labtest-${labId}-${Date.now()}`,
        });
        await handle.runMaintenance('replenish');
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          session = await handle.service.status(session.id);
          if (session.state === 'active') return `env ${session.envId} ready`;
          if (session.state === 'ended') throw new Error(`session ended: ${session.endedReason}`);
          if (Date.now() > deadline)
            throw new Error(`not ready after ${timeoutMs} ms (${session.state})`);
          await new Promise((r) => setTimeout(r, 100));
        }
      })) &&
      (await step('check fails right after setup', async () => {
        const r = await check();
        if (r.passed) throw new Error('the check passes although nothing was fixed');
        if (r.checks.some((c) => !c.passed && c.messages.length === 0)) {
          throw new Error('a failing check printed no FAIL: message for the student');
        }
        return describe(r);
      })) &&
      (await step('solve', async () => {
        if (scripts.solve.length === 0) throw new Error('the lab has no solve scripts');
        const envId = session!.envId!;
        const env = await ctx.store.getEnv(envId);
        const nodes = await envNodes(
          ctx.cluster,
          envNamespace(ctx.config, envId),
          nodesOfFlavor(ctx.config, env?.flavor ?? lab.flavor),
        );
        const run = {
          executor: ctx.executor,
          envId,
          nodes,
          env: { LAB_ID: lab.id, LAB_SESSION: session!.id },
        };
        await runSteps(run, scripts.solve);
        return `${scripts.solve.length} script(s) ran`;
      })) &&
      (await step('check passes after solve', async () => {
        const r = await check();
        if (!r.passed) throw new Error(describe(r));
        return describe(r);
      })) &&
      (await step('solve again and check again (idempotent)', async () => {
        const envId = session!.envId!;
        const env = await ctx.store.getEnv(envId);
        const nodes = await envNodes(
          ctx.cluster,
          envNamespace(ctx.config, envId),
          nodesOfFlavor(ctx.config, env?.flavor ?? lab.flavor),
        );
        await runSteps(
          { executor: ctx.executor, envId, nodes, env: { LAB_ID: lab.id } },
          scripts.solve,
        );
        const r = await check();
        if (!r.passed) throw new Error(describe(r));
        return describe(r);
      }));
    return { labId, ok: Boolean(ok), steps };
  } finally {
    if (session) {
      await step('tear down', async () => {
        await handle.service.stop(session!.id);
        return 'released';
      });
    }
  }
}

export function formatLabTestReport(report: LabTestReport): string {
  const lines = [`${report.ok ? 'PASS' : 'FAIL'} ${report.labId}`];
  for (const s of report.steps) {
    lines.push(`  ${s.ok ? '✓' : '✗'} ${s.name} (${s.ms} ms)${s.detail ? ` — ${s.detail}` : ''}`);
  }
  return lines.join('\n');
}
