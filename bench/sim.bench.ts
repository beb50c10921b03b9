/**
 * The simulator's own cost (run: `npx tsx bench/sim.bench.ts`), so it never
 * becomes the bottleneck of labvirt's benchmarks. Through @kubernetes/client-node
 * over HTTPS, like labvirt: requests per second for get, list and create, with
 * a raw loopback HTTPS GET of /version in the same run as the baseline (ratio),
 * then the process's memory holding BENCH_VMS VirtualMachines (default 3000)
 * that really run as VMIs with launcher pods, without SSH guests (guests are
 * measured by the gateway benchmark). BENCH_REQUESTS (default 2000) requests
 * per rate, BENCH_VM_ROUND VM creates per validation round.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { validateObject } from '../src/kube/index.js';
import { startSim } from '../src/sim/index.js';
import { result } from './lib.js';

const VMS = Number(process.env.BENCH_VMS ?? 3000);
const N = Number(process.env.BENCH_REQUESTS ?? 2000);
/** VM creates per validation round (six rounds); the smoke run sets a few (BENCH_VM_ROUND). */
const VM_ROUND = Number(process.env.BENCH_VM_ROUND ?? Math.max(100, Math.round(N / 4)));
const CONCURRENCY = 20;

async function rate(name: string, fn: (i: number) => Promise<unknown>, count = N): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) await fn(next++);
    }),
  );
  const perSecond = count / ((performance.now() - started) / 1000);
  console.log(
    `${name}: ${perSecond.toFixed(0)} requests/s (${count} requests, ${CONCURRENCY} at once)`,
  );
  return perSecond;
}

const dir = mkdtempSync(join(tmpdir(), 'labvirt-simbench-'));
const sim = await startSim({ dir, speed: 1000, guests: false, nodes: 64, historyLimit: 20_000 });
const kc = new KubeConfig();
kc.loadFromFile(sim.kubeconfigPath);
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
await core.createNamespace({ body: { metadata: { name: 'bench' } } });
for (let i = 0; i < 50; i++) {
  await core.createNamespacedSecret({
    namespace: 'bench',
    body: { metadata: { name: `seed-${i}`, labels: { i: String(i % 5) } } },
  });
}

const baseline = await rate(
  'baseline: raw HTTPS GET /version',
  () =>
    new Promise<void>((resolve, reject) => {
      const req = request(
        `${sim.url}/version`,
        { ca: sim.caPem, headers: { authorization: `Bearer ${sim.token}` }, agent: false },
        (res) => {
          res.resume();
          res.on('end', () => resolve());
        },
      );
      req.on('error', reject);
      req.end();
    }),
);
const get = await rate('get secret', () =>
  core.readNamespacedSecret({ namespace: 'bench', name: 'seed-7' }),
);
const list = await rate('list secrets (labelSelector, 10 of 50)', () =>
  core.listNamespacedSecret({ namespace: 'bench', labelSelector: 'i=3' }),
);
const create = await rate('create configmap', (i) =>
  core.createNamespacedConfigMap({ namespace: 'bench', body: { metadata: { name: `cm-${i}` } } }),
);
console.log(
  `ratios to the baseline (client-node's own cost included): get ${(get / baseline).toFixed(2)}, list ${(list / baseline).toFixed(2)}, create ${(create / baseline).toFixed(2)}`,
);

// What schema validation costs: the same VirtualMachine creates (KubeVirt's
// CRD schema, the largest the sim checks) on this sim and on one that skips it.
const vmBody = (name: string) => ({
  apiVersion: 'kubevirt.io/v1',
  kind: 'VirtualMachine',
  metadata: { name },
  spec: {
    runStrategy: 'Halted',
    template: {
      metadata: { labels: { app: name } },
      spec: {
        domain: {
          cpu: { cores: 1 },
          memory: { guest: '1Gi' },
          devices: { disks: [{ name: 'root', disk: { bus: 'virtio' } }] },
        },
        volumes: [
          { name: 'root', containerDisk: { image: 'quay.io/containerdisks/ubuntu:22.04' } },
        ],
      },
    },
  },
});
const unvalidatedDir = mkdtempSync(join(tmpdir(), 'labvirt-simbench-novalid-'));
const unvalidated = await startSim({
  dir: unvalidatedDir,
  speed: 1000,
  guests: false,
  validation: false,
});
const ukc = new KubeConfig();
ukc.loadFromFile(unvalidated.kubeconfigPath);
await ukc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'bench' } } });
const ucustom = ukc.makeApiClient(CustomObjectsApi);
// Alternating rounds, so drift on a shared machine hits both sides alike.
let plainRate = 0;
let checkedRate = 0;
for (let round = 0; round < 3; round++) {
  plainRate += await rate(
    `create VirtualMachine, validation off (round ${round + 1})`,
    (i) =>
      ucustom.createNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace: 'bench',
        plural: 'virtualmachines',
        body: vmBody(`p${round}-${i}`),
      }),
    VM_ROUND,
  );
  checkedRate += await rate(
    `create VirtualMachine, validated (round ${round + 1})`,
    (i) =>
      custom.createNamespacedCustomObject({
        group: 'kubevirt.io',
        version: 'v1',
        namespace: 'bench',
        plural: 'virtualmachines',
        body: vmBody(`v${round}-${i}`),
      }),
    VM_ROUND,
  );
}
console.log(
  `validation keeps ${((checkedRate / plainRate) * 100).toFixed(0)} % of the unvalidated VM create rate`,
);
// The validator alone, against the deep clone the store makes of every object anyway.
const sample = { ...vmBody('sample'), metadata: { name: 'sample', namespace: 'bench' } };
const perSecond = (fn: () => unknown) => {
  const n = 20_000;
  const t = performance.now();
  for (let k = 0; k < n; k++) fn();
  return n / ((performance.now() - t) / 1000);
};
const cloneRate = perSecond(() => structuredClone(sample));
const validateRate = perSecond(() => validateObject(sample));
console.log(
  `validateObject(VM): ${validateRate.toFixed(0)}/s; structuredClone(VM): ${cloneRate.toFixed(0)}/s; one validation costs ${(cloneRate / validateRate).toFixed(1)} clones`,
);
await unvalidated.stop();
rmSync(unvalidatedDir, { recursive: true, force: true });
await custom.deleteCollectionNamespacedCustomObject({
  group: 'kubevirt.io',
  version: 'v1',
  namespace: 'bench',
  plural: 'virtualmachines',
});

const before = process.memoryUsage().rss;
for (let i = 0; i < VMS; i++) {
  await custom.createNamespacedCustomObject({
    group: 'kubevirt.io',
    version: 'v1',
    namespace: 'bench',
    plural: 'virtualmachines',
    body: {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: `vm-${i}` },
      spec: {
        runStrategy: 'Always',
        template: {
          metadata: { labels: { 'labvirt.io/env': `e${Math.floor(i / 3)}` } },
          spec: { domain: { cpu: { cores: 1 }, memory: { guest: '1Gi' }, devices: {} } },
        },
      },
    },
  });
}
const deadline = Date.now() + 120_000;
for (;;) {
  const vmis = (await custom.listNamespacedCustomObject({
    group: 'kubevirt.io',
    version: 'v1',
    namespace: 'bench',
    plural: 'virtualmachineinstances',
  })) as { items: { status?: { phase?: string } }[] };
  // Custom resources take no status.phase field selector (as on a real API server).
  const running = vmis.items.filter((v) => v.status?.phase === 'Running').length;
  if (running >= VMS || Date.now() > deadline) {
    console.log(`${running} of ${VMS} VMIs Running`);
    break;
  }
  await new Promise((r) => setTimeout(r, 500));
}
global.gc?.();
const mem = process.memoryUsage();
console.log(
  `memory with ${VMS} VMs (+ VMIs + launcher pods): rss ${(mem.rss / 2 ** 20).toFixed(0)} MiB (+${((mem.rss - before) / 2 ** 20).toFixed(0)} MiB for the VMs), heap used ${(mem.heapUsed / 2 ** 20).toFixed(0)} MiB`,
);
const t0 = performance.now();
await custom.listNamespacedCustomObject({
  group: 'kubevirt.io',
  version: 'v1',
  namespace: 'bench',
  plural: 'virtualmachines',
});
console.log(`list of all ${VMS} VMs: ${(performance.now() - t0).toFixed(0)} ms`);
result({
  what: "the simulator's get ÷ a raw HTTPS GET, requests per second (no target: it must not be the bottleneck)",
  figure: `${(get / baseline).toFixed(2)} (list ${(list / baseline).toFixed(2)}, create ${(create / baseline).toFixed(2)}); rss with ${VMS} VMs ${(mem.rss / 2 ** 20).toFixed(0)} MiB`,
});
await sim.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
