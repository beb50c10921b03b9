import type { V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { mirrorName } from '../../src/sync/index.js';
import { planMirrors, refusalMessage, studentPorts } from '../../src/sync/plan.js';

const DNS_1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

describe('mirror names', () => {
  it('reads back to the student port, is a valid Service name, and stays ≤ 63 characters with a hash when long', () => {
    expect(mirrorName('shop', 'web', 80, 'TCP')).toBe('web-x-shop-x-80');
    expect(mirrorName('shop', 'web', 53, 'UDP')).toBe('web-x-shop-x-53-udp');
    const longA = mirrorName('n'.repeat(63), 's'.repeat(63), 30080, 'TCP');
    const longB = mirrorName('n'.repeat(63), 's'.repeat(63), 30081, 'TCP');
    for (const name of [longA, longB]) {
      expect(name.length).toBeLessThanOrEqual(63);
      expect(name).toMatch(DNS_1035);
    }
    // Same prefix, different port: the hash tells them apart, and always the same way.
    expect(longA).not.toBe(longB);
    expect(mirrorName('n'.repeat(63), 's'.repeat(63), 30080, 'TCP')).toBe(longA);
  });
});

describe('planning mirrors', () => {
  const svc = (
    ns: string,
    name: string,
    created: string,
    ports: { port: number; nodePort?: number; protocol?: string }[],
    type = 'NodePort',
  ): V1Service => ({
    metadata: { namespace: ns, name, creationTimestamp: new Date(created) },
    spec: { type, ports },
  });
  const limits = {
    maxPortsPerEnv: 2,
    protocols: ['TCP', 'UDP'] as const,
    studentPortRange: { min: 30000, max: 32767 },
  };

  it('takes NodePort and LoadBalancer ports with a node port, oldest Service first; ClusterIP and unallocated ports expose nothing', () => {
    const ports = studentPorts([
      svc('b', 'new', '2026-12-05T10:00:00Z', [{ port: 1, nodePort: 30001 }]),
      svc('a', 'old', '2026-12-05T09:00:00Z', [{ port: 2, nodePort: 30002 }], 'LoadBalancer'),
      svc('a', 'internal', '2026-12-05T08:00:00Z', [{ port: 3 }], 'ClusterIP'),
      svc('a', 'pending', '2026-12-05T08:00:00Z', [{ port: 4 }]),
    ]);
    expect(ports.map((p) => `${p.namespace}/${p.service}:${p.port}`)).toEqual([
      'a/old:2',
      'b/new:1',
    ]);
  });

  it('never lets a newer port evict one already mirrored, and says why the rest are refused', () => {
    const ports = studentPorts([
      svc('a', 'first', '2026-12-05T09:00:00Z', [{ port: 80, nodePort: 30080 }]),
      svc('a', 'second', '2026-12-05T09:01:00Z', [{ port: 81, nodePort: 30081 }]),
      svc('a', 'third', '2026-12-05T09:02:00Z', [{ port: 82, nodePort: 30082 }]),
      svc('a', 'dns', '2026-12-05T09:03:00Z', [{ port: 53, nodePort: 30053, protocol: 'SCTP' }]),
      svc('a', 'low', '2026-12-05T09:04:00Z', [{ port: 9, nodePort: 20000 }]),
    ]);
    const plan = planMirrors(ports, limits, new Set(['third-x-a-x-82']));
    expect(plan.mirrors.map((m) => m.name)).toEqual(['third-x-a-x-82', 'first-x-a-x-80']);
    expect(plan.refused.map(refusalMessage)).toEqual([
      'dns:53/SCTP not published: protocol SCTP is not published (allowed: TCP, UDP)',
      'low:9 not published: node port 20000 is outside the published range 30000-32767',
      'second:81 not published: at most 2 ports per lab',
    ]);
  });
});
