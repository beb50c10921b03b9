import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Vitest's order (failed first, then the longest by the last run's cache, or
 * the largest file when there is no cache, as in CI) with the benches' smoke
 * run (test/bench/) first: it takes minutes but mostly waits on its
 * simulators, so started first it overlaps the rest of the suite instead of
 * adding its whole length at the end.
 */
export class SmokeFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const isSmoke = (f: TestSpecification) => /[\\/]test[\\/]bench[\\/]/.test(f.moduleId);
    return [...sorted.filter(isSmoke), ...sorted.filter((f) => !isSmoke(f))];
  }
}
