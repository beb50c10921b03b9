import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Executor } from '../../src/ssh/index.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

/**
 * A single claim's path (issue #12, "single warm claim"): the tools
 * inventory that follows the lab's setup does not wait for the student's
 * key installs, which touch nothing it records. Before, it started only
 * after every node's key install, one guest command more on every claim's
 * path. The key installs here are held until the inventory has started (or
 * 20 s have passed): run one after the other, the inventory would start
 * only after that hold.
 */
describe('prepare: the tools inventory beside the key installs', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: { 'v1.30-1node': { minWarm: 0 }, 'v1.30-3node': { minWarm: 1, maxTotal: 1 } },
      },
    });
    await stack.fillPool('v1.30-3node', 1, { timeoutMs: 90_000 });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('takes the inventory while the key installs run, and lets the student in after both', async () => {
    const { service, context } = stack.labvirt;
    const executor: Executor = context.executor;
    const original = { exec: executor.exec, installStudentKey: executor.installStudentKey };
    let inventoryStarted!: () => void;
    const inventory = new Promise<void>((resolve) => (inventoryStarted = resolve));
    let inventoryBeforeKeys = false;
    let keysDone = 0;
    executor.exec = (target, script, opts) => {
      // The inventory's script ends with its own marker (src/sessions/integrity.ts).
      if (script.includes('labvirt-tools-done')) inventoryStarted();
      return original.exec(target, script, opts);
    };
    executor.installStudentKey = async (target, publicKey) => {
      const held = await Promise.race([
        inventory.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 20_000)),
      ]);
      if (held) inventoryBeforeKeys = true;
      await original.installStudentKey(target, publicKey);
      keysDone++;
    };
    try {
      const started = await service.start({ student: 'overlap', labId: 'fixture-three' });
      const active = await stack.untilSession(started.id, 'active', 60_000);
      expect(inventoryBeforeKeys).toBe(true);
      // Let in only once every node has the key.
      expect(keysDone).toBe(3);
      expect(active.state).toBe('active');
      // And the inventory of the node the setup touched was recorded.
      const record = await context.store.getSession(started.id);
      expect(Object.keys(JSON.parse(record!.tools!) as object).sort()).toEqual([
        'control-plane',
        'worker-1',
        'worker-2',
      ]);
    } finally {
      executor.exec = original.exec;
      executor.installStudentKey = original.installStudentKey;
    }
  }, 90_000);
});
