import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type V1Namespace,
} from '@kubernetes/client-node';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';

const { Client, utils } = ssh2;

/** The simulator's API, exercised only through @kubernetes/client-node over HTTPS. */
describe('simulated host cluster: Kubernetes API semantics', () => {
  let sim: SimHandle;
  let dir: string;
  let kc: KubeConfig;
  let core: CoreV1Api;

  const code = async (p: Promise<unknown>): Promise<number> => {
    try {
      await p;
      return 200;
    } catch (err) {
      if (err instanceof ApiException) return err.code;
      throw err;
    }
  };
  const message = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
      return '';
    } catch (err) {
      return String((err as ApiException<string>).body);
    }
  };
  const ns = async (name: string): Promise<V1Namespace> =>
    core.createNamespace({ body: { metadata: { name, labels: { team: 'a' } } } });
  const until = async (fn: () => Promise<boolean>, what: string) => {
    const deadline = Date.now() + 10_000;
    while (!(await fn())) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-sim-'));
    sim = await startSim({
      dir,
      speed: 200,
      historyLimit: 200,
      namespaceDeleteDelayMs: 200,
      quotaStatusDelayMs: 300,
    });
    kc = new KubeConfig();
    kc.loadFromFile(sim.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses requests without the token (401) and serves HTTPS with its own CA', async () => {
    const anon = new KubeConfig();
    anon.loadFromOptions({
      clusters: [{ name: 'c', server: sim.url, caData: Buffer.from(sim.caPem).toString('base64') }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    expect(await code(anon.makeApiClient(CoreV1Api).listNamespace())).toBe(401);
    expect(sim.url).toMatch(/^https:\/\/127\.0\.0\.1:/);
  });

  it('creates, reads, lists with selectors and pages, and refuses stale updates with 409', async () => {
    await ns('crud');
    for (let i = 0; i < 5; i++) {
      await core.createNamespacedSecret({
        namespace: 'crud',
        body: {
          metadata: { generateName: 's-', labels: { tier: i % 2 ? 'odd' : 'even', i: String(i) } },
        },
      });
    }
    const all = await core.listNamespacedSecret({ namespace: 'crud' });
    expect(all.items).toHaveLength(5);
    expect(all.items.every((s) => /^s-[a-z0-9]{5}$/.test(s.metadata!.name!))).toBe(true);
    expect(
      (await core.listNamespacedSecret({ namespace: 'crud', labelSelector: 'tier=odd' })).items,
    ).toHaveLength(2);
    expect(
      (
        await core.listNamespacedSecret({
          namespace: 'crud',
          labelSelector: 'i in (0,1,2),tier!=odd',
        })
      ).items,
    ).toHaveLength(2);
    expect(
      (await core.listNamespacedSecret({ namespace: 'crud', labelSelector: '!missing' })).items,
    ).toHaveLength(5);
    const page1 = await core.listNamespacedSecret({ namespace: 'crud', limit: 2 });
    const page2 = await core.listNamespacedSecret({
      namespace: 'crud',
      limit: 2,
      _continue: page1.metadata!._continue,
    });
    const page3 = await core.listNamespacedSecret({
      namespace: 'crud',
      limit: 2,
      _continue: page2.metadata!._continue,
    });
    const names = [...page1.items, ...page2.items, ...page3.items].map((s) => s.metadata!.name);
    expect(new Set(names).size).toBe(5);
    expect(page3.metadata?._continue).toBeFalsy();

    const first = all.items[0]!;
    const a = { ...first, data: { k: Buffer.from('a').toString('base64') } };
    const b = { ...first, data: { k: Buffer.from('b').toString('base64') } };
    const results = await Promise.allSettled([
      core.replaceNamespacedSecret({ namespace: 'crud', name: first.metadata!.name!, body: a }),
      core.replaceNamespacedSecret({ namespace: 'crud', name: first.metadata!.name!, body: b }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((rejected.reason as ApiException<string>).code).toBe(409);
    expect(String((rejected.reason as ApiException<string>).body)).toMatch(
      /the object has been modified/,
    );
    expect(
      await code(
        core.createNamespacedSecret({
          namespace: 'crud',
          body: { metadata: { name: first.metadata!.name } },
        }),
      ),
    ).toBe(409);
    expect(await code(core.readNamespacedSecret({ namespace: 'crud', name: 'nope' }))).toBe(404);
  });

  it('merge-patches labels and keeps status out of main-resource writes', async () => {
    await ns('patch');
    await core.patchNamespace(
      { name: 'patch', body: { metadata: { labels: { state: 'warm', team: null } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const read = await core.readNamespace({ name: 'patch' });
    expect(read.metadata?.labels).toMatchObject({ state: 'warm' });
    expect(read.metadata?.labels?.team).toBeUndefined();
    expect(read.status?.phase).toBe('Active');
  });

  it('resumes a watch from a resourceVersion and answers 410 when it is too old', async () => {
    await ns('watch');
    const created = await core.createNamespacedConfigMap({
      namespace: 'watch',
      body: { metadata: { name: 'one' } },
    });
    await core.createNamespacedConfigMap({
      namespace: 'watch',
      body: { metadata: { name: 'two' } },
    });
    const seen: string[] = [];
    const w = new Watch(kc);
    const req = await w.watch(
      '/api/v1/namespaces/watch/configmaps',
      { resourceVersion: created.metadata!.resourceVersion },
      (type, obj: { metadata: { name: string } }) => seen.push(`${type} ${obj.metadata.name}`),
      () => undefined,
    );
    await core.deleteNamespacedConfigMap({ namespace: 'watch', name: 'one' });
    await until(async () => seen.includes('DELETED one'), 'the watch to see the delete');
    expect(seen[0]).toBe('ADDED two'); // resumed after "one"
    req.abort();
    // Push the history past its window, then ask for an old version.
    for (let i = 0; i < 250; i++) {
      await core.createNamespacedConfigMap({
        namespace: 'watch',
        body: { metadata: { name: `fill-${i}` } },
      });
    }
    let gone: unknown;
    await new Promise<void>((resolve) => {
      void w.watch(
        '/api/v1/namespaces/watch/configmaps',
        { resourceVersion: created.metadata!.resourceVersion },
        (type, obj) => {
          if (type === 'ERROR') gone = obj;
        },
        () => resolve(),
      );
    });
    expect(gone).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' });
  });

  it('deletes a namespace asynchronously: Terminating, refuses new content, then gone with its contents', async () => {
    await ns('doomed');
    await core.createNamespacedSecret({ namespace: 'doomed', body: { metadata: { name: 'x' } } });
    await core.deleteNamespace({ name: 'doomed' });
    const terminating = await core.readNamespace({ name: 'doomed' });
    expect(terminating.status?.phase).toBe('Terminating');
    expect(terminating.metadata?.deletionTimestamp).toBeDefined();
    expect(
      await message(
        core.createNamespacedSecret({ namespace: 'doomed', body: { metadata: { name: 'y' } } }),
      ),
    ).toMatch(/unable to create new content in namespace doomed because it is being terminated/);
    await until(
      async () => (await code(core.readNamespace({ name: 'doomed' }))) === 404,
      'namespace gone',
    );
    expect(await code(core.readNamespacedSecret({ namespace: 'doomed', name: 'x' }))).toBe(404);
  });

  it('holds objects with finalizers until the last one is removed, and collects owned objects', async () => {
    await ns('fin');
    await core.createNamespacedConfigMap({
      namespace: 'fin',
      body: { metadata: { name: 'held', finalizers: ['example.com/hold'] } },
    });
    await core.deleteNamespacedConfigMap({ namespace: 'fin', name: 'held' });
    const held = await core.readNamespacedConfigMap({ namespace: 'fin', name: 'held' });
    expect(held.metadata?.deletionTimestamp).toBeDefined();
    await core.patchNamespacedConfigMap(
      { namespace: 'fin', name: 'held', body: { metadata: { finalizers: null } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(await code(core.readNamespacedConfigMap({ namespace: 'fin', name: 'held' }))).toBe(404);

    const owner = await core.createNamespacedConfigMap({
      namespace: 'fin',
      body: { metadata: { name: 'owner' } },
    });
    await core.createNamespacedSecret({
      namespace: 'fin',
      body: {
        metadata: {
          name: 'owned',
          ownerReferences: [
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! },
          ],
        },
      },
    });
    await core.deleteNamespacedConfigMap({ namespace: 'fin', name: 'owner' });
    await until(
      async () =>
        (await code(core.readNamespacedSecret({ namespace: 'fin', name: 'owned' }))) === 404,
      'GC',
    );
  });

  it('allocates NodePorts and refuses a port already in use with 422', async () => {
    await ns('svc');
    const a = await core.createNamespacedService({
      namespace: 'svc',
      body: { metadata: { name: 'a' }, spec: { type: 'NodePort', ports: [{ port: 22 }] } },
    });
    const port = a.spec!.ports![0]!.nodePort!;
    expect(port).toBeGreaterThanOrEqual(30000);
    expect(a.spec?.clusterIP).toMatch(/^10\.96\./);
    const clash = core.createNamespacedService({
      namespace: 'svc',
      body: {
        metadata: { name: 'b' },
        spec: { type: 'NodePort', ports: [{ port: 22, nodePort: port }] },
      },
    });
    expect(await code(clash)).toBe(422);
    expect(
      await message(
        core.createNamespacedService({
          namespace: 'svc',
          body: {
            metadata: { name: 'c' },
            spec: { type: 'NodePort', ports: [{ port: 22, nodePort: port }] },
          },
        }),
      ),
    ).toMatch(/provided port is already allocated/);
    await core.deleteNamespacedService({ namespace: 'svc', name: 'a' });
    const reuse = await core.createNamespacedService({
      namespace: 'svc',
      body: {
        metadata: { name: 'd' },
        spec: { type: 'NodePort', ports: [{ port: 22, nodePort: port }] },
      },
    });
    expect(reuse.spec!.ports![0]!.nodePort).toBe(port);
  });

  it('enforces ResourceQuota with the real messages, including "status unknown" right after creation', async () => {
    await ns('quota');
    await core.createNamespacedResourceQuota({
      namespace: 'quota',
      body: { metadata: { name: 'q' }, spec: { hard: { secrets: '1' } } },
    });
    expect(
      await message(
        core.createNamespacedSecret({ namespace: 'quota', body: { metadata: { name: 'early' } } }),
      ),
    ).toMatch(/status unknown for quota: q/);
    await until(
      async () =>
        Boolean(
          (await core.readNamespacedResourceQuota({ namespace: 'quota', name: 'q' })).status?.hard,
        ),
      'quota status',
    );
    await core.createNamespacedSecret({ namespace: 'quota', body: { metadata: { name: 'one' } } });
    const refused = core.createNamespacedSecret({
      namespace: 'quota',
      body: { metadata: { name: 'two' } },
    });
    expect(await message(refused)).toMatch(
      /exceeded quota: q, requested: secrets=1, used: secrets=1, limited: secrets=1/,
    );
  });
});

describe('simulated host cluster: KubeVirt emulation and guests', () => {
  let sim: SimHandle;
  let dir: string;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  const key = utils.generateKeyPairSync('ed25519');

  const vm = (name: string, memory = '1Gi') => ({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name, labels: { app: name } },
    spec: {
      runStrategy: 'Always',
      template: {
        metadata: { labels: { 'labvirt.io/env': 'e1', 'labvirt.io/node': name } },
        spec: {
          domain: { cpu: { cores: 1 }, memory: { guest: memory }, devices: {} },
          volumes: [{ name: 'ci', cloudInitNoCloud: { secretRef: { name: `${name}-ci` } } }],
        },
      },
    },
  });
  const getVmi = async (ns: string, name: string) =>
    (await custom.getNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: ns,
      plural: 'virtualmachineinstances',
      name,
    })) as {
      status: {
        phase: string;
        interfaces?: { ipAddress: string }[];
        conditions?: { type: string; status: string; reason?: string }[];
      };
    };
  const until = async (fn: () => Promise<boolean>, what: string, ms = 15_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        if (await fn()) return;
      } catch {
        /* not there yet */
      }
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-simkv-'));
    sim = await startSim({ dir, speed: 500, nodes: 1, nodeCpu: 8, nodeMemory: 3 * 2 ** 30 });
    const kc = new KubeConfig();
    kc.loadFromFile(sim.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    await core.createNamespace({ body: { metadata: { name: 'kv' } } });
    for (const name of ['a', 'b', 'c']) {
      await core.createNamespacedSecret({
        namespace: 'kv',
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
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('boots a VM to a Running VMI with an IP, Ready and AgentConnected, and a launcher pod with the template labels', async () => {
    await custom.createNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: 'kv',
      plural: 'virtualmachines',
      body: vm('a'),
    });
    await until(async () => {
      const v = await getVmi('kv', 'a');
      return (
        v.status.phase === 'Running' &&
        Boolean(v.status.conditions?.some((c) => c.type === 'AgentConnected'))
      );
    }, 'VMI running');
    const v = await getVmi('kv', 'a');
    expect(v.status.interfaces?.[0]?.ipAddress).toMatch(/^10\.244\./);
    const pods = await core.listNamespacedPod({
      namespace: 'kv',
      labelSelector: 'kubevirt.io=virt-launcher,labvirt.io/node=a',
    });
    expect(pods.items[0]?.metadata?.name).toMatch(/^virt-launcher-a-/);
    const vmObj = (await custom.getNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: 'kv',
      plural: 'virtualmachines',
      name: 'a',
    })) as {
      status: { printableStatus: string; ready: boolean };
    };
    expect(vmObj.status).toMatchObject({ printableStatus: 'Running', ready: true });
  });

  it('runs commands in the guest over SSH with the key from cloud-init', async () => {
    const ip = (await getVmi('kv', 'a')).status.interfaces![0]!.ipAddress;
    const target = sim.resolveGuest(ip, 22);
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
        host: target.host,
        port: target.port,
        username: 'labvirt',
        privateKey: key.private,
      });
    });
    expect(out).toBe('hello-labvirt');
  });

  it('answers 409 to start on a running VM, stops and starts through the subresources', async () => {
    const base = `${sim.url}/apis/subresources.kubevirt.io/v1/namespaces/kv/virtualmachines/a`;
    // What `virtctl start|stop` does: PUT on the subresource, trusting the sim's own CA.
    const call = (sub: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          `${base}/${sub}`,
          {
            method: 'PUT',
            ca: sim.caPem,
            headers: { authorization: `Bearer ${sim.token}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await call('start')).toBe(409);
    expect(await call('stop')).toBe(202);
    await until(async () => {
      try {
        await getVmi('kv', 'a');
        return false;
      } catch {
        return true;
      }
    }, 'VMI gone after stop');
    expect(await call('stop')).toBe(409);
    expect(await call('start')).toBe(202);
    await until(async () => (await getVmi('kv', 'a')).status.phase === 'Running', 'running again');
  });

  it('keeps a VMI that does not fit Unschedulable until room frees', async () => {
    // The single node has 3 GiB: "a" (1 GiB + overhead) runs; a 2 GiB VM does not fit.
    await custom.createNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: 'kv',
      plural: 'virtualmachines',
      body: vm('b', '2Gi'),
    });
    await until(async () => {
      const v = await getVmi('kv', 'b');
      return Boolean(
        v.status.conditions?.some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'),
      );
    }, 'b unschedulable');
    await custom.deleteNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: 'kv',
      plural: 'virtualmachines',
      name: 'a',
    });
    await until(
      async () => (await getVmi('kv', 'b')).status.phase === 'Running',
      'b scheduled once a is gone',
    );
  });

  it('injects faults: failing VMIs and API errors', async () => {
    sim.faults.failNextVmis = 1;
    await custom.createNamespacedCustomObject({
      group: 'kubevirt.io',
      version: 'v1',
      namespace: 'kv',
      plural: 'virtualmachines',
      body: vm('c', '256Mi'),
    });
    await until(async () => (await getVmi('kv', 'c')).status.phase === 'Failed', 'c failed');
    sim.faults.errorRate = 1;
    sim.faults.errorCode = 429;
    const err = await core.listNamespace().catch((e: unknown) => e);
    expect((err as ApiException<string>).code).toBe(429);
    sim.faults.reset();
    expect((await core.listNamespace()).items.length).toBeGreaterThan(0);
  });
});

describe('simulated host cluster: fault admin endpoint', () => {
  it('sets and resets faults over HTTPS with the same token, from another process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-simfault-'));
    const sim = await startSim({ dir, speed: 500, guests: false });
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
      await sim.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
