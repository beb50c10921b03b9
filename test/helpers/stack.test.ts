import { describe, expect, it } from 'vitest';
import { fillPool } from './stack.js';

// A labvirt that answers only what fillPool asks: the pool's counts per state,
// one reading per poll, the last one repeated.
function countingLabvirt(readings: Record<string, number>[]) {
  const tasks: string[] = [];
  let polls = 0;
  const labvirt = {
    runMaintenance: async (task: string) => void tasks.push(task),
    store: {
      countByState: async () => readings[Math.min(polls++, readings.length - 1)]!,
    },
  } as unknown as Parameters<typeof fillPool>[0];
  return { labvirt, tasks, polls: () => polls };
}

describe('fillPool', () => {
  it('runs one replenish and returns once enough envs are warm', async () => {
    const { labvirt, tasks, polls } = countingLabvirt([
      { warm: 0, booting: 2 },
      { warm: 1, booting: 1 },
      { warm: 2 },
    ]);
    await fillPool(labvirt, 'v1.30-1node', 2, { timeoutMs: 5_000 });
    expect(tasks).toEqual(['replenish']);
    expect(polls()).toBe(3);
  });

  it('says what it wanted and what it last saw when it gives up', async () => {
    const { labvirt } = countingLabvirt([{ warm: 1, booting: 1, failed: 0 }]);
    await expect(fillPool(labvirt, 'v1.30-1node', 2, { timeoutMs: 200 })).rejects.toThrow(
      'timed out after 0.2 s waiting for 2 warm v1.30-1node envs after a replenish: ' +
        '1 warm when it gave up (1 booting)',
    );
  });

  it('lets an error from labvirt through instead of waiting it out', async () => {
    const { labvirt } = countingLabvirt([]);
    labvirt.store.countByState = async () => {
      throw new Error('Connection is closed.');
    };
    await expect(fillPool(labvirt, 'v1.30-1node', 1, { timeoutMs: 60_000 })).rejects.toThrow(
      'Connection is closed.',
    );
  });
});
