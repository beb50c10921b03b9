import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that took longest in a whole run (seconds, 3 workers, before the
 * cuts in docs/testing.md, "Suite time"). Vitest starts the longest first
 * only when its cache holds the last run's durations; CI starts without one
 * and went by file size, so a short file that waits long (sessions/labtest:
 * 89 lines, 43 s) started last and ran alone at the end. Rough figures are
 * enough: they only need to put these ahead of the many files of a few
 * seconds.
 */
const KNOWN_SLOW: Record<string, number> = {
  'test/sessions/slow-setup.test.ts': 80,
  'test/pool/sessions.test.ts': 50,
  'test/slack/notifier.test.ts': 49,
  'test/slack/front.test.ts': 47,
  'test/sessions/labtest.test.ts': 43,
  'test/sync/resilience.test.ts': 42,
  'test/api/real-service.test.ts': 39,
  'test/sessions/node-restarts.test.ts': 37,
  'test/deploy/dockerfile.test.ts': 36,
  'test/pool/recovery.test.ts': 35,
  'test/slack/key-link.test.ts': 34,
  'test/slack/replicas.test.ts': 32,
  'test/web/admin.test.ts': 29,
  'test/web/terminal-rules.test.ts': 29,
  'test/web/student.test.ts': 26,
  'test/slack/dev-socket-mode.test.ts': 26,
  'test/images/lock.test.ts': 25,
  'test/doctor/doctor.test.ts': 22,
  'test/ssh/gateway.test.ts': 22,
  'test/ssh/gateway-deployed.test.ts': 21,
};

/**
 * Vitest's order (failed first, then the longest by the last run's cache, or
 * the largest file when there is no cache) with two changes: the benches'
 * smoke run (test/bench/) first, and without a cache the files known to be
 * slow before the rest, longest first. The smoke run takes minutes but mostly
 * waits on its simulators, so started first it overlaps the rest of the suite
 * instead of adding its whole length at the end.
 */
export class SmokeFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    let sorted = await super.sort(files);
    const relativePath = (f: TestSpecification) => relative(this.ctx.config.root, f.moduleId);
    // The key vitest's cache uses (BaseSequencer).
    const cached = files.some((f) =>
      this.ctx.cache.getFileTestResults(`${f.project.name}:${relativePath(f)}`),
    );
    if (!cached) {
      const known = (f: TestSpecification) => KNOWN_SLOW[relativePath(f).replace(/\\/g, '/')] ?? 0;
      // Array sort is stable: files not in the table keep vitest's order.
      sorted = [...sorted].sort((a, b) => known(b) - known(a));
    }
    const isSmoke = (f: TestSpecification) => /[\\/]test[\\/]bench[\\/]/.test(f.moduleId);
    return [...sorted.filter(isSmoke), ...sorted.filter((f) => !isSmoke(f))];
  }
}
