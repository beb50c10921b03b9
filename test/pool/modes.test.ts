import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { targetsAt } from '../../src/pool/targets.js';
import { startTestStack } from '../helpers/stack.js';

const ONE = 'v1.30-1node';
const THREE = 'v1.30-3node';

describe('scheduled class targets', () => {
  const config = loadConfig({
    env: {},
    overrides: {
      flavors: { [THREE]: { kubernetesVersion: '1.30', nodes: 3, minWarm: 2, maxTotal: 40 } },
      schedules: [
        {
          name: 'Tuesday class',
          cron: '0 9 * * 2',
          timezone: 'UTC',
          flavor: THREE,
          minWarm: 30,
          leadMinutes: 30,
          holdMinutes: 120,
        },
      ],
    },
  });
  const target = (iso: string) => targetsAt(config, new Date(iso)).find((t) => t.flavor === THREE)!;

  it('raises the warm target from the lead time before the class until the hold time after it', () => {
    // 2026-11-24 is a Tuesday.
    expect(target('2026-11-24T08:29:00Z').minWarm).toBe(2);
    const early = target('2026-11-24T08:30:00Z');
    expect(early.minWarm).toBe(30);
    expect(early.scheduled[0]).toMatchObject({
      name: 'Tuesday class',
      from: '2026-11-24T08:30:00.000Z',
      until: '2026-11-24T11:00:00.000Z',
    });
    expect(target('2026-11-24T10:59:00Z').minWarm).toBe(30);
    expect(target('2026-11-24T11:01:00Z').minWarm).toBe(2);
    expect(target('2026-11-25T09:00:00Z').minWarm).toBe(2); // Wednesday
  });

  it('never raises a target above the flavor maximum', () => {
    const small = loadConfig({
      env: {},
      overrides: {
        flavors: { [THREE]: { kubernetesVersion: '1.30', nodes: 3, minWarm: 1, maxTotal: 5 } },
        schedules: [{ name: 'big class', cron: '* * * * *', flavor: THREE, minWarm: 50 }],
      },
    });
    expect(targetsAt(small, new Date()).find((t) => t.flavor === THREE)?.minWarm).toBe(5);
  });

  it('grows the pool ahead of a class that is about to start', async () => {
    const stack = await startTestStack({
      overrides: {
        flavors: {
          [ONE]: { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 6 },
          [THREE]: { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
        },
        // A class every minute: always within its lead time.
        schedules: [
          {
            name: 'every minute',
            cron: '* * * * *',
            flavor: ONE,
            minWarm: 4,
            leadMinutes: 2,
            holdMinutes: 1,
          },
        ],
      },
    });
    try {
      await stack.fillPool(ONE, 4, { timeoutMs: 60_000 });
      const pool = await stack.labvirt.service.poolStatus();
      const one = pool.flavors.find((f) => f.flavor === ONE)!;
      expect(one).toMatchObject({ minWarm: 1, targetWarm: 4 });
      expect(one.scheduledTargets[0]?.name).toBe('every minute');
    } finally {
      await stack.stop();
    }
  }, 90_000);
});

describe('ssh.mode: nodeport', () => {
  it('gives each env its own SSH NodePort and tells the student to use it', async () => {
    const stack = await startTestStack({
      overrides: { ssh: { mode: 'nodeport', publicHost: 'labs.example.org' } },
    });
    try {
      await stack.fillPool(ONE, 1);
      const s = await stack.labvirt.service.start({ student: 'nina', labId: 'fixture-one' });
      const active = await stack.untilSession(s.id, 'active');
      expect(active.connection).toMatchObject({
        mode: 'nodeport',
        host: 'labs.example.org',
        user: 'student',
      });
      expect(active.connection!.port).toBeGreaterThanOrEqual(30000);
      expect(active.connection!.port).toBeLessThanOrEqual(32767);
      expect(active.connection!.command).toContain(
        `-p ${active.connection!.port} student@labs.example.org`,
      );
      // No gateway runs in this mode.
      expect(stack.labvirt.gatewayPort).toBeUndefined();
    } finally {
      await stack.stop();
    }
  }, 90_000);
});
