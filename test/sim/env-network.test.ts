import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EnvNetwork, type EnvMember } from '../../src/sim/env-network.js';
import type { Guest } from '../../src/sim/guest/index.js';

const dir = mkdtempSync(join(tmpdir(), 'labvirt-env-network-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function member(name: string, n: number): EnvMember {
  // Only what EnvNetwork asks of a guest: its host key and where it may connect.
  const guest = { hostPublicKey: `ssh-ed25519 AAAA${name}`, allowOutbound: () => undefined };
  return {
    vmiName: name,
    nodeName: name,
    role: name === 'control-plane' ? 'control-plane' : 'worker',
    address: `127.111.9.${n}`,
    sandboxRoot: join(dir, name),
    guest: guest as unknown as Guest,
    subdomain: 'nodes',
  };
}

describe("the simulator's env network", () => {
  it('leaves every node the latest list of peers when updates overlap', async () => {
    const net = new EnvNetwork(
      'lab-overlap',
      () => undefined,
      () => undefined,
    );
    const controlPlane = member('control-plane', 1);
    const worker1 = member('worker-1', 2);
    const worker2 = member('worker-2', 3);
    // The nodes of an env come up together, each telling the network: an
    // earlier update, slow to reach worker-1 (many nodes before it), and a
    // later one that writes worker-1 first.
    const others = Array.from({ length: 20 }, (_, i) => member(`other-${i}`, 10 + i));
    const earlier = net.update([controlPlane, ...others, worker1], 'control-plane.nodes');
    const later = net.update([worker1, controlPlane, ...others, worker2], 'control-plane.nodes');
    await Promise.all([earlier, later]);
    const hosts = readFileSync(join(worker1.sandboxRoot, 'etc', 'hosts'), 'utf8');
    expect(hosts).toMatch(/^127\.111\.9\.3 worker-2 worker-2\.nodes\.lab-overlap\.svc/m);
    const known = readFileSync(join(worker1.sandboxRoot, 'etc', 'ssh', 'ssh_known_hosts'), 'utf8');
    expect(known).toContain('ssh-ed25519 AAAAworker-2');
  });
});
