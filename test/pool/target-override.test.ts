import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { targetsAt } from '../../src/pool/targets.js';

const THREE = 'v1.30-3node';

describe("an operator's runtime warm target", () => {
  const config = loadConfig({
    env: {},
    overrides: {
      flavors: { [THREE]: { kubernetesVersion: '1.30', nodes: 3, minWarm: 2, maxTotal: 40 } },
      schedules: [{ name: 'always a class', cron: '* * * * *', flavor: THREE, minWarm: 30 }],
    },
  });
  const at = (overrides?: Record<string, number>) =>
    targetsAt(config, new Date(), overrides).find((t) => t.flavor === THREE)!;

  it('wins over minWarm and a scheduled target in force (so a drained flavor stays empty)', () => {
    expect(at().minWarm).toBe(30);
    expect(at().override).toBeUndefined();
    expect(at({ [THREE]: 0 })).toMatchObject({ minWarm: 0, override: 0 });
    expect(at({ [THREE]: 7 }).minWarm).toBe(7);
    // The schedule is still listed: the dashboard shows what a reset brings back.
    expect(at({ [THREE]: 7 }).scheduled).toHaveLength(1);
  });

  it('is capped at maxTotal and ignores flavors that do not exist', () => {
    expect(at({ [THREE]: 99 }).minWarm).toBe(40);
    expect(targetsAt(config, new Date(), { 'v9.9-1node': 3 }).map((t) => t.flavor)).not.toContain(
      'v9.9-1node',
    );
  });
});
