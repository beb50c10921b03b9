import { request as httpsRequest, type RequestOptions } from 'node:https';
import { isIP } from 'node:net';
import type { ApiException } from '@kubernetes/client-node';
import { ApisApi, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import ssh2 from 'ssh2';
import { generateKeyPair } from '../../src/ssh/index.js';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import {
  itNeedsKubevirt,
  itSimOnly,
  onRealCluster,
  startTarget,
  statusCode,
  type ConformanceTarget,
} from './target.js';

const { Client } = ssh2;

const code = statusCode;

/** A containerDisk that boots on real KubeVirt; the sim boots anything. */
const vmImage = process.env.LABVIRT_E2E_VM_IMAGE || 'quay.io/kubevirt/cirros-container-disk-demo';
/** Image pulls and boots on a real cluster take minutes; the sim's take milliseconds. */
const bootTimeoutMs = onRealCluster ? 300_000 : 15_000;

interface Vmi {
  status: {
    phase: string;
    interfaces?: { ipAddress?: string }[];
    conditions?: { type: string; status: string; reason?: string }[];
  };
}
interface Vm {
  status?: { printableStatus?: string; ready?: boolean };
}

/** KubeVirt as labvirt drives it, through @kubernetes/client-node: on the sim or a real cluster. */
describe('conformance: KubeVirt', () => {
  let target: ConformanceTarget;
  let ns: string;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  const key = generateKeyPair();

  const vm = (name: string, memory: string) => {
    const template =
      target.kind === 'sim'
        ? {
            domain: { cpu: { cores: 1 }, memory: { guest: memory }, devices: {} },
            volumes: [{ name: 'ci', cloudInitNoCloud: { secretRef: { name: `${name}-ci` } } }],
          }
        : {
            // Stopping must not wait out a guest that ignores ACPI (180 s by default).
            terminationGracePeriodSeconds: 0,
            domain: {
              cpu: { cores: 1 },
              memory: { guest: memory },
              devices: {
                disks: [
                  { name: 'root', disk: { bus: 'virtio' } },
                  { name: 'ci', disk: { bus: 'virtio' } },
                ],
              },
            },
            volumes: [
              { name: 'root', containerDisk: { image: vmImage } },
              { name: 'ci', cloudInitNoCloud: { secretRef: { name: `${name}-ci` } } },
            ],
          };
    return {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name, labels: { app: name } },
      spec: {
        runStrategy: 'Always',
        template: {
          metadata: { labels: { 'labvirt.io/env': 'e1', 'labvirt.io/node': name } },
          spec: template,
        },
      },
    };
  };
  /** What the tests boot: the sim's sizes are what its tiny node is arranged around. */
  const smallMemory = () => (target.kind === 'sim' ? '1Gi' : '128Mi');
  const kv = (plural: 'virtualmachines' | 'virtualmachineinstances') => ({
    group: 'kubevirt.io',
    version: 'v1',
    namespace: ns,
    plural,
  });
  const createVm = (name: string, memory: string) =>
    custom.createNamespacedCustomObject({ ...kv('virtualmachines'), body: vm(name, memory) });
  const deleteVm = (name: string) =>
    custom.deleteNamespacedCustomObject({ ...kv('virtualmachines'), name });
  const getVm = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...kv('virtualmachines'), name })) as Vm;
  const getVmi = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...kv('virtualmachineinstances'), name })) as Vmi;
  const condition = (v: Vmi, type: string) => v.status.conditions?.find((c) => c.type === type);

  /** What `virtctl start|stop|restart` does: PUT on the subresource, with the kubeconfig's credentials and CA. */
  const subresource = async (name: string, sub: 'start' | 'stop' | 'restart') => {
    const server = target.kc.getCurrentCluster()!.server;
    const opts: RequestOptions = {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
    };
    await target.kc.applyToHTTPSOptions(opts);
    return new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        `${server}/apis/subresources.kubevirt.io/v1/namespaces/${ns}/virtualmachines/${name}/${sub}`,
        opts,
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
  };

  beforeAll(async () => {
    // One node of 3 GiB: room for one 1 GiB VM (plus launcher overhead), not for 2 GiB more.
    target = await startTarget({ speed: 500, nodes: 1, nodeCpu: 8, nodeMemory: 3 * 2 ** 30 });
    core = target.kc.makeApiClient(CoreV1Api);
    custom = target.kc.makeApiClient(CustomObjectsApi);
    ns = await target.createNamespace('kv');
    for (const name of ['a', 'b', 'c', 'huge']) {
      await core.createNamespacedSecret({
        namespace: ns,
        body: {
          metadata: { name: `${name}-ci` },
          stringData: {
            userdata: `#cloud-config\nusers:\n  - name: labvirt\n    ssh_authorized_keys: ['${key.public.trim()}']\n`,
          },
        },
      });
    }
  });
  afterAll(async () => {
    await target?.stop();
  });

  itNeedsKubevirt(
    'serves discovery for kubevirt.io/v1 and the start/stop/restart subresources',
    async () => {
      const groups = (await target.kc.makeApiClient(ApisApi).getAPIVersions()).groups;
      for (const group of ['kubevirt.io', 'subresources.kubevirt.io'])
        expect(groups.find((g) => g.name === group)?.versions).toContainEqual(
          expect.objectContaining({ groupVersion: `${group}/v1`, version: 'v1' }),
        );
      const resources = (await custom.getAPIResources({ group: 'kubevirt.io', version: 'v1' }))
        .resources;
      expect(resources.find((r) => r.name === 'virtualmachines')).toMatchObject({
        kind: 'VirtualMachine',
        namespaced: true,
      });
      expect(resources.find((r) => r.name === 'virtualmachineinstances')).toMatchObject({
        kind: 'VirtualMachineInstance',
        namespaced: true,
      });
      const subresources = (
        await custom.getAPIResources({ group: 'subresources.kubevirt.io', version: 'v1' })
      ).resources.map((r) => r.name);
      for (const sub of ['start', 'stop', 'restart'])
        expect(subresources).toContain(`virtualmachines/${sub}`);
    },
  );

  itNeedsKubevirt(
    'boots a VM to a Running VMI with an IP and Ready, and a launcher pod with the template labels',
    async () => {
      await createVm('a', smallMemory());
      await target.until(
        async () => {
          const v = await getVmi('a');
          return (
            v.status.phase === 'Running' &&
            isIP(v.status.interfaces?.[0]?.ipAddress ?? '') !== 0 &&
            condition(v, 'Ready')?.status === 'True' &&
            // cirros, the default real-cluster image, has no guest agent to connect.
            (target.kind === 'real' || condition(v, 'AgentConnected')?.status === 'True')
          );
        },
        'VMI Running with an IP and Ready',
        bootTimeoutMs,
      );
      if (target.sim)
        expect((await getVmi('a')).status.interfaces?.[0]?.ipAddress).toMatch(/^10\.244\./);
      const pods = await core.listNamespacedPod({
        namespace: ns,
        labelSelector: 'kubevirt.io=virt-launcher,labvirt.io/node=a',
      });
      expect(pods.items).toHaveLength(1);
      expect(pods.items[0]?.metadata?.name).toMatch(/^virt-launcher-a-/);
      expect(pods.items[0]?.metadata?.labels).toMatchObject({
        'labvirt.io/env': 'e1',
        'vm.kubevirt.io/name': 'a',
      });
      // The VM's status follows its VMI a controller round later.
      await target.until(async () => {
        const s = (await getVm('a')).status;
        return s?.printableStatus === 'Running' && s.ready === true;
      }, 'VM status Running and ready');
    },
  );

  itSimOnly('runs commands in the guest over SSH with the key from cloud-init', async () => {
    const ip = (await getVmi('a')).status.interfaces![0]!.ipAddress!;
    // sshd answers a moment after the VMI reports Running, as on a real VM.
    let guest: { host: string; port: number } | undefined;
    await target.until(async () => {
      guest = target.sim!.resolveGuest(ip, 22);
      return true;
    }, 'sshd up in the guest');
    const out = await new Promise<string>((resolve, reject) => {
      const c = new Client();
      c.on('ready', () =>
        c.exec('echo hello-$USER', (err, stream) => {
          if (err) return reject(err);
          let text = '';
          stream.on('data', (d: Buffer) => (text += d.toString()));
          stream.on('close', () => {
            c.end();
            resolve(text.trim());
          });
        }),
      );
      c.on('error', reject);
      c.connect({
        host: guest!.host,
        port: guest!.port,
        username: 'labvirt',
        privateKey: key.private,
      });
    });
    expect(out).toBe('hello-labvirt');
  });

  itNeedsKubevirt(
    'answers 409 to start on a running VM and to stop/restart on a stopped one, and stops and starts through the subresources',
    async () => {
      expect(await subresource('a', 'start')).toBe(409);
      expect(await subresource('a', 'stop')).toBe(202);
      await target.until(
        async () => (await code(getVmi('a'))) === 404,
        'VMI gone after stop',
        bootTimeoutMs,
      );
      await target.until(
        async () => (await getVm('a')).status?.printableStatus === 'Stopped',
        'VM Stopped',
      );
      expect(await subresource('a', 'stop')).toBe(409);
      expect(await subresource('a', 'restart')).toBe(409);
      expect(await subresource('a', 'start')).toBe(202);
      await target.until(
        async () => (await getVmi('a')).status.phase === 'Running',
        'running again',
        bootTimeoutMs,
      );
    },
  );

  itNeedsKubevirt(
    'keeps a VMI that fits no node Scheduling with PodScheduled=False/Unschedulable',
    async () => {
      // Beyond any node: the sim's is 3 GiB, and no real node has 64 TiB.
      await createVm('huge', target.kind === 'sim' ? '8Gi' : '64Ti');
      try {
        await target.until(
          async () => {
            const v = await getVmi('huge');
            const scheduled = condition(v, 'PodScheduled');
            return (
              v.status.phase === 'Scheduling' &&
              scheduled?.status === 'False' &&
              scheduled.reason === 'Unschedulable'
            );
          },
          'huge unschedulable',
          bootTimeoutMs,
        );
        await target.until(
          async () => (await getVm('huge')).status?.printableStatus === 'ErrorUnschedulable',
          'VM ErrorUnschedulable',
        );
      } finally {
        await deleteVm('huge');
      }
    },
  );

  itSimOnly('schedules an Unschedulable VMI once room frees', async () => {
    // The single node has 3 GiB: "a" (1 GiB + overhead) runs; a 2 GiB VM does not fit beside it.
    await createVm('b', '2Gi');
    await target.until(async () => {
      const v = await getVmi('b');
      return condition(v, 'PodScheduled')?.reason === 'Unschedulable';
    }, 'b unschedulable');
    await deleteVm('a');
    await target.until(
      async () => (await getVmi('b')).status.phase === 'Running',
      'b scheduled once a is gone',
    );
  });

  itSimOnly('injects faults: failing VMIs and API errors', async () => {
    const sim = target.sim!;
    sim.faults.failNextVmis = 1;
    await createVm('c', '256Mi');
    await target.until(async () => (await getVmi('c')).status.phase === 'Failed', 'c failed');
    sim.faults.errorRate = 1;
    sim.faults.errorCode = 429;
    const err = await core.listNamespace().catch((e: unknown) => e);
    expect((err as ApiException<string>).code).toBe(429);
    sim.faults.reset();
    expect((await core.listNamespace()).items.length).toBeGreaterThan(0);
  });

  itSimOnly(
    'sets and resets faults over HTTPS at /sim/faults with the same token, as another process would',
    async () => {
      const sim = target.sim!;
      const admin = (method: string, body?: unknown, token = sim.token) =>
        new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
          const req = httpsRequest(
            `${sim.url}/sim/faults`,
            {
              method,
              ca: sim.caPem,
              headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            },
            (res) => {
              let text = '';
              res.on('data', (d: Buffer) => (text += d.toString()));
              res.on('end', () =>
                resolve({
                  status: res.statusCode ?? 0,
                  body: JSON.parse(text) as Record<string, unknown>,
                }),
              );
            },
          );
          req.on('error', reject);
          req.end(body ? JSON.stringify(body) : undefined);
        });
      try {
        expect((await admin('POST', { errorRate: 1 }, 'wrong')).status).toBe(401);
        const set = await admin('POST', { errorRate: 1, errorCode: 429, failNextVmis: 2 });
        expect(set.body).toMatchObject({ errorRate: 1, errorCode: 429, failNextVmis: 2 });
        expect((await admin('GET')).body).toMatchObject({ errorRate: 1, failNextVmis: 2 });
        const kc = new KubeConfig();
        kc.loadFromFile(sim.kubeconfigPath);
        const err = await kc
          .makeApiClient(CoreV1Api)
          .listNamespace()
          .catch((e: unknown) => e);
        expect((err as ApiException<string>).code).toBe(429);
        expect((await admin('POST', { reset: true })).body).toMatchObject({
          errorRate: 0,
          failNextVmis: 0,
        });
        expect((await kc.makeApiClient(CoreV1Api).listNamespace()).kind).toBe('NamespaceList');
      } finally {
        sim.faults.reset();
      }
    },
  );
});
