import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseListen } from '../../src/cli/commands/labtest.js';
import { formatLabTestReport, testLab } from '../../src/sessions/labtest.js';
import { startTestStack } from '../helpers/stack.js';
import { FIXTURES } from './helpers.js';

describe('labs test --sim --bind --ports', () => {
  it('starts everything on the given address, within the given port range', async () => {
    // 127.0.0.2 is loopback too (127/8), and not the default: it shows the
    // address is used. A random base keeps parallel runs apart.
    const from = 20_000 + Math.floor(Math.random() * 400) * 20;
    const listen = { host: '127.0.0.2', ports: { from, to: from + 19 } };
    const stack = await startTestStack({
      listen,
      overrides: {
        labsDir: join(FIXTURES, 'labtest'),
        flavors: {
          'v1.31-1node': { kubernetesVersion: '1.31', nodes: 1, minWarm: 1, maxTotal: 2 },
        },
      },
      roles: { api: false, gateway: false },
    });
    const inRange = (hostPort: string) => {
      const [host, port] = hostPort.split(':');
      return host === '127.0.0.2' && Number(port) >= from && Number(port) <= from + 19;
    };
    try {
      expect(inRange(new URL(stack.sim.url).host)).toBe(true);
      expect(inRange(new URL(stack.redis.url).host)).toBe(true);
      const report = await testLab(stack.labvirt, 'good', { timeoutMs: 90_000 });
      expect(report.ok, formatLabTestReport(report)).toBe(true);
      const guests = Object.values(
        JSON.parse(readFileSync(stack.sim.guestMapPath, 'utf8')) as Record<string, string>,
      );
      expect(guests.length).toBeGreaterThan(0);
      for (const g of guests) expect(inRange(g), g).toBe(true);
    } finally {
      await stack.stop();
    }
  }, 300_000); // generous: on a loaded machine each claim may wait for an env to boot
});

describe('--bind and --ports', () => {
  it('accept an IP address and a range, and say what is wrong with anything else', () => {
    expect(parseListen('127.0.0.1', undefined)).toEqual({ host: '127.0.0.1' });
    expect(parseListen('::1', '41000-41199')).toEqual({
      host: '::1',
      ports: { from: 41000, to: 41199 },
    });
    expect(parseListen('localhost', undefined)).toBe(
      '--bind localhost is not an IP address (e.g. 127.0.0.1)',
    );
    for (const bad of ['41000', '42000-41000', '0-10', '1-70000', '1-2;rm']) {
      expect(parseListen('127.0.0.1', bad)).toBe(
        `--ports ${bad} is not a range like 41000-41199 (from ≤ to, within 1-65535)`,
      );
    }
  });
});
