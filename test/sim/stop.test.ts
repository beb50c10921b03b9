import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import {
  HostCluster,
  envNamespace,
  generateEnvSecrets,
  renderEnvironment,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { SYNC_FLAVORS } from '../helpers/student-envs.js';

/** Every path under `dir` with its size and modification time. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries) {
      const p = join(d, name);
      try {
        const s = statSync(p);
        out.push(`${p} ${s.size} ${s.mtimeMs}`);
        if (s.isDirectory()) walk(p);
      } catch {
        // gone meanwhile: the next snapshot shows it
      }
    }
  };
  walk(dir);
  return out.sort();
}

const dirs: string[] = [];
let sim: SimHandle | undefined;
afterAll(async () => {
  await sim?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 });
});

/** A simulator with guests in a directory of its own, and a client of it. */
async function startGuestSim() {
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-sim-stop-'));
  dirs.push(dir);
  const started = await startSim({ dir, speed: 300, guests: true });
  sim = started;
  const config = loadConfig({ env: {}, overrides: { flavors: SYNC_FLAVORS } });
  const kc = new KubeConfig();
  kc.loadFromFile(started.kubeconfigPath);
  return { dir, config, sim: started, host: new HostCluster(kc, { logger: silentLogger() }) };
}

/** Nothing under `dir` is made, changed or removed in the next 1.5 s. */
async function expectNothingChangesUnder(dir: string): Promise<void> {
  const atStop = snapshot(dir);
  await new Promise((r) => setTimeout(r, 1500));
  expect(snapshot(dir)).toEqual(atStop);
}

describe('the simulator stopping while VMs boot', () => {
  it('is done with its guests when stop() resolves: nothing under its directory changes after', async () => {
    const { dir, config, host, sim: running } = await startGuestSim();
    // Two 3-VM envs: their guests start (sandbox, helper, cloud-init's files)
    // a boot delay after their VMs are made, and stop() comes as they do.
    await Promise.all(
      ['stopaaaa', 'stopbbbb'].map(async (envId) =>
        host.createAll(
          await renderEnvironment({
            config,
            flavor: 'v1.30-3node',
            envId,
            secrets: await generateEnvSecrets(),
          }),
        ),
      ),
    );
    const guests = join(dir, 'guests');
    await expect.poll(() => snapshot(guests).length, { interval: 5 }).toBeGreaterThan(0);
    await running.stop();
    sim = undefined;
    await expectNothingChangesUnder(dir);
    // What a test's afterAll does next.
    expect(() => rmSync(dir, { recursive: true })).not.toThrow();
  });

  it('waits for a VM’s removal that began as it was asked to stop (the env’s other guests are told)', async () => {
    const { dir, config, host, sim: running } = await startGuestSim();
    await host.createAll(
      await renderEnvironment({
        config,
        flavor: 'v1.30-3node',
        envId: 'stopcccc',
        secrets: await generateEnvSecrets(),
      }),
    );
    const namespace = envNamespace(config, 'stopcccc');
    await expect
      .poll(async () => (await host.listVmis(namespace)).filter((v) => v.ready).length, {
        interval: 50,
        timeout: 60_000,
      })
      .toBe(3);
    // A worker's VMI goes (a student's restart, a namespace deleted): its
    // removal rewrites the other guests' hosts and keys. stop() comes at once.
    await host.custom.deleteNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace,
      plural: 'virtualmachineinstances',
      name: 'worker-1',
    });
    await running.stop();
    sim = undefined;
    await expectNothingChangesUnder(dir);
    expect(() => rmSync(dir, { recursive: true })).not.toThrow();
    await host.close();
  });
});
