import { Writable } from 'node:stream';
import type { ClientChannel } from 'ssh2';
import { NetworkingV1Api, type V1Service } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBus, type EventOf, type LabvirtEvent } from '../../src/events/index.js';
import {
  envNamespace,
  HostCluster,
  LABELS,
  MANAGED_BY,
  syncClientCertificate,
  type EnvSecrets,
} from '../../src/kube/index.js';
import { generateCa } from '../../src/pki/index.js';
import { createLogger, silentLogger } from '../../src/log/index.js';
import type { Executor } from '../../src/ssh/index.js';
import { MIRROR_POLICY, NodePortSync, readEnvPorts, SYNC_LABELS } from '../../src/sync/index.js';
import {
  mirrorServices,
  startSimHost,
  type SimHost,
  type StudentEnv,
} from '../helpers/student-envs.js';

const MAX_PORTS = 3;

/** Limits, restarts, outages, dropped watches, session end. */
describe('NodePort sync: limits and failures', { timeout: 90_000 }, () => {
  let h: SimHost;
  let net: NetworkingV1Api;
  const events: LabvirtEvent[] = [];
  const logLines: { msg: string; envId?: string }[] = [];
  const bus = new EventBus();
  bus.onAny((e) => void events.push(e));
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean))
          logLines.push(JSON.parse(line) as { msg: string; envId?: string });
        done();
      },
    }),
  });
  const running = new Set<NodePortSync>();
  /** Overrides of `sync` (a long `resyncSeconds`: only the watch itself can follow a change). */
  const startSync = (overrides: Partial<typeof h.config.sync> = {}, executor?: Executor) => {
    const config = { ...h.config, sync: { ...h.config.sync, ...overrides } };
    const sync = new NodePortSync({
      config,
      cluster: h.host,
      executor: executor ?? h.executor,
      events: bus,
      logger,
    });
    sync.start();
    running.add(sync);
    return sync;
  };
  const stopSync = async (sync: NodePortSync) => {
    running.delete(sync);
    await sync.stop();
  };

  beforeAll(async () => {
    h = await startSimHost({
      sync: {
        maxPortsPerEnv: MAX_PORTS,
        protocols: ['TCP', 'UDP'],
        studentPortRange: { min: 30000, max: 32000 },
        retryInitialSeconds: 0.05,
        retryMaxSeconds: 0.4,
        resyncSeconds: 2,
      },
    });
    net = h.host.kubeConfig.makeApiClient(NetworkingV1Api);
  }, 60_000);
  // Stopping syncs and the harness waits on the host; a loaded machine outgrew 60 s once.
  afterAll(async () => {
    for (const s of running) await s.stop();
    await h?.close();
  }, 180_000);

  const mirrorNames = async (env: StudentEnv) =>
    (await mirrorServices(h.host.core, env.namespace)).map((s) => s.metadata!.name!);
  const untilNames = (env: StudentEnv, want: string[], what: string, timeoutMs?: number) =>
    h.until(
      async () => JSON.stringify(await mirrorNames(env)) === JSON.stringify([...want].sort()),
      what,
      timeoutMs,
    );
  const service = (
    name: string,
    ports: { port: number; nodePort?: number; protocol?: string }[],
  ): V1Service => ({
    metadata: { name },
    spec: {
      type: 'NodePort',
      selector: { app: name },
      ports: ports.map((p, i) => ({ name: `p${i}`, ...p, targetPort: 8080 as never })),
    },
  });
  const active = async (
    envId: string,
    secrets?: (made: EnvSecrets) => EnvSecrets | Promise<EnvSecrets>,
  ) => {
    const env = await h.startEnv(envId, undefined, secrets);
    await h.setState(env, 'active');
    await env.student.createNamespace({ body: { metadata: { name: 'app' } } });
    return env;
  };
  const refusals = (envId: string) =>
    events.filter(
      (e): e is EventOf<'sync.refused'> => e.type === 'sync.refused' && e.envId === envId,
    );

  it('removes a mirror policy left on an inactive env, and deletes none where there is none', async () => {
    // Two env Namespaces no session holds: one with a policy a crashed
    // replica left behind, one clean (as every new env is).
    const namespaceOf = (envId: string) => envNamespace(h.config, envId);
    for (const envId of ['leftover', 'cleanenv'])
      await h.host.core.createNamespace({
        body: {
          metadata: {
            name: namespaceOf(envId),
            labels: { [LABELS.env]: envId, [LABELS.managedBy]: MANAGED_BY, [LABELS.state]: 'warm' },
          },
        },
      });
    await net.createNamespacedNetworkPolicy({
      namespace: namespaceOf('leftover'),
      body: {
        metadata: { name: MIRROR_POLICY },
        spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{}] },
      },
    });
    const requests = new Map<string, number>();
    h.host.onRequest((verb, resource) =>
      requests.set(`${verb} ${resource}`, (requests.get(`${verb} ${resource}`) ?? 0) + 1),
    );
    const sync = startSync();
    await h.until(
      async () =>
        net
          .readNamespacedNetworkPolicy({ namespace: namespaceOf('leftover'), name: MIRROR_POLICY })
          .then(
            () => false,
            () => true,
          ),
      'the leftover policy removed',
    );
    // Both envs were looked at (a read each), and only the one with a policy had it deleted.
    await h.until(async () => (requests.get('get NetworkPolicy') ?? 0) >= 2, 'both envs read');
    expect(requests.get('delete NetworkPolicy')).toBe(1);
    await stopSync(sync);
    for (const envId of ['leftover', 'cleanenv'])
      await h.host.core.deleteNamespace({ name: namespaceOf(envId) });
  });

  it('refuses what the limits exclude before asking the host, reports each refusal once, and shows it in the env’s ports', async () => {
    const env = await active('limits01');
    const sync = startSync();
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('many', [{ port: 1 }, { port: 2 }, { port: 3 }, { port: 4 }]),
    });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('high', [{ port: 80, nodePort: 32500 }]),
    });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('sctp', [{ port: 5000, protocol: 'SCTP' }]),
    });
    await untilNames(env, ['many-x-app-x-1', 'many-x-app-x-2', 'many-x-app-x-3'], 'three mirrors');
    await h.until(async () => refusals('limits01').length === 3, 'three refusals');
    const messages = refusals('limits01')
      .map((e) => e.message)
      .sort();
    expect(messages).toEqual([
      'high:80 not published: node port 32500 is outside the published range 30000-32000',
      'many:4 not published: at most 3 ports per lab',
      'sctp:5000/SCTP not published: protocol SCTP is not published (allowed: TCP, UDP)',
    ]);
    expect(refusals('limits01')[0]).toMatchObject({
      sessionId: 's-limits01',
      student: 'student-limits01',
    });

    const ports = await readEnvPorts(h.host, h.config, (await h.host.getNamespace(env.namespace))!);
    expect(ports.published.map((p) => p.port)).toEqual([1, 2, 3]);
    expect(ports.refused.map((r) => r.message).sort()).toEqual(messages);

    // Resyncs (every 2 s here) and a restarted labvirt report nothing again.
    await new Promise((r) => setTimeout(r, 2500));
    await stopSync(sync);
    const again = startSync();
    await new Promise((r) => setTimeout(r, 1000));
    expect(refusals('limits01')).toHaveLength(3);

    // The quota on the host backs the limit: it is sized from the same setting.
    const quota = await h.host.core.readNamespacedResourceQuota({
      namespace: env.namespace,
      name: 'env-quota',
    });
    expect(quota.spec?.hard?.['services.nodeports']).toBe(String(MAX_PORTS));

    // A freed place goes to the refused port, in the order the student created them.
    await env.student.deleteNamespacedService({ namespace: 'app', name: 'many' });
    await untilNames(env, [], 'mirrors of many gone');
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('many', [{ port: 1 }, { port: 2 }, { port: 3 }, { port: 4 }]),
    });
    await untilNames(env, ['many-x-app-x-1', 'many-x-app-x-2', 'many-x-app-x-3'], 'mirrors back');
    await stopSync(again);
  });

  it('a labvirt restarted mid-way converges without duplicates, and two replicas at once do too', async () => {
    const env = await active('restart1');
    const first = startSync();
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('a', [{ port: 80 }]),
    });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('b', [{ port: 81 }]),
    });
    await untilNames(env, ['a-x-app-x-80', 'b-x-app-x-81'], 'a and b mirrored');
    await stopSync(first);
    // While labvirt is down the student changes things.
    await env.student.deleteNamespacedService({ namespace: 'app', name: 'a' });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('c', [{ port: 82 }]),
    });
    const second = startSync();
    const third = startSync();
    await untilNames(env, ['b-x-app-x-81', 'c-x-app-x-82'], 'converged after the restart');
    const all = (await h.host.core.listNamespacedService({ namespace: env.namespace })).items;
    expect(
      all.filter((s) => s.metadata?.labels?.[SYNC_LABELS.component] === 'mirror'),
    ).toHaveLength(2);
    await stopSync(third);
    await stopSync(second);
  });

  it('watches with the certificate issued with the env, and signs its own when that one would expire', async () => {
    // Expired (issued for 0 days, back-dated 5 minutes): the sync must not present it.
    const stale = await active('certold1', async (made) => ({
      ...made,
      syncClient: await syncClientCertificate(made.ca, 0),
    }));
    // Valid dates but another CA's: presented, the student API server refuses it.
    const foreign = await active('certfrn1', async (made) => ({
      ...made,
      syncClient: await syncClientCertificate(await generateCa({ commonName: 'other' }), 30),
    }));
    const sync = startSync();
    for (const env of [stale, foreign])
      await env.student.createNamespacedService({
        namespace: 'app',
        body: service('web', [{ port: 80 }]),
      });
    await untilNames(stale, ['web-x-app-x-80'], 'mirrored with a certificate of its own');
    await h.until(
      async () =>
        logLines.some(
          (l) =>
            l.envId === 'certfrn1' &&
            /unreachable/.test(l.msg) &&
            /401|Unauthorized/.test(JSON.stringify(l)),
        ),
      'the stored certificate presented and refused',
    );
    expect(await mirrorNames(foreign)).toEqual([]);
    await stopSync(sync);
  });

  it('keeps the mirrors while the student API server is down, logs the outage once, converges when it is back', async () => {
    const env = await active('outage01');
    const sync = startSync();
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('web', [{ port: 80 }]),
    });
    await untilNames(env, ['web-x-app-x-80'], 'web mirrored');
    const listed = sync.listedEnvs;

    await h.sim.faults.studentApiServing(env.namespace, false);
    // Several retries (50 ms doubling to 400 ms) and a resync pass.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await mirrorNames(env)).toEqual(['web-x-app-x-80']);
    // Not counted as listed while its API server does not answer (the bench waits on this count).
    expect(sync.listedEnvs).toBe(listed - 1);
    const down = logLines.filter((l) => l.envId === 'outage01' && /unreachable/.test(l.msg));
    expect(down).toHaveLength(1);

    await h.sim.faults.studentApiServing(env.namespace, true);
    await h.until(
      async () => logLines.some((l) => l.envId === 'outage01' && /reachable again/.test(l.msg)),
      'back',
    );
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('api', [{ port: 90 }]),
    });
    await untilNames(env, ['api-x-app-x-90', 'web-x-app-x-80'], 'api mirrored after the outage');
    expect(sync.listedEnvs).toBe(listed);
    expect(
      logLines.filter((l) => l.envId === 'outage01' && /unreachable/.test(l.msg)),
    ).toHaveLength(1);
    await stopSync(sync);
  });

  it('resumes after its watch is dropped, from where it was, and follows the next change within one event', async () => {
    const env = await active('dropped1');
    // No watchdog relist during the test: what follows the changes is the resumed watch.
    // (Its bounds below are far under the 600 s relist and loose enough for a loaded
    // machine: 1.8 s failed once at load 14.)
    const sync = startSync({ resyncSeconds: 600 });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('one', [{ port: 80 }]),
    });
    await untilNames(env, ['one-x-app-x-80'], 'one mirrored');
    h.sim.faults.dropStudentWatches(env.namespace);
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('two', [{ port: 81 }]),
    });
    await untilNames(env, ['one-x-app-x-80', 'two-x-app-x-81'], 'two mirrored', 15_000);
    // Dropped again with a deletion in the gap: the resumed watch replays it.
    h.sim.faults.dropStudentWatches(env.namespace);
    await env.student.deleteNamespacedService({ namespace: 'app', name: 'one' });
    await untilNames(env, ['two-x-app-x-81'], 'one gone after the second drop', 15_000);
    await stopSync(sync);
  });

  it('relists when its resourceVersion has been compacted away (410 Gone), dropping what went in the gap', async () => {
    const env = await active('expired1');
    // A dropped watch is resumed after the initial retry delay: 2 s, time to move the cluster on.
    const sync = startSync({ resyncSeconds: 600, retryInitialSeconds: 2, retryMaxSeconds: 2 });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('one', [{ port: 80 }]),
    });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('two', [{ port: 81 }]),
    });
    await untilNames(env, ['one-x-app-x-80', 'two-x-app-x-81'], 'both mirrored');
    // The watch drops; before it resumes, the cluster moves on and its history is compacted.
    h.sim.faults.dropStudentWatches(env.namespace);
    await env.student.deleteNamespacedService({ namespace: 'app', name: 'one' });
    await env.student.createNamespace({ body: { metadata: { name: 'later' } } });
    h.sim.faults.compactStudentHistory(env.namespace);
    // The deletion is in no history any more: only a relist can find it.
    await untilNames(env, ['two-x-app-x-81'], 'one gone after the relist', 5000);
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('three', [{ port: 82 }]),
    });
    await untilNames(env, ['three-x-app-x-82', 'two-x-app-x-81'], 'three mirrored', 1800);
    await stopSync(sync);
  });

  it.each(['guest', 'labvirt'] as const)(
    'holds exactly one SSH channel per idle watched env, and one again after its watch drops (TLS in %s)',
    async (apiTls) => {
      const env = await active(apiTls === 'guest' ? 'onechang' : 'onechanl');
      // Counted where labvirt's traffic leaves it: the SSH channels the sync opens to the student API server.
      const open = new Set<ClientChannel>();
      const executor: Executor = Object.create(h.executor) as Executor;
      const count = (envId: string, channel: ClientChannel) => {
        if (envId !== env.envId) return channel;
        open.add(channel);
        channel.once('close', () => open.delete(channel));
        return channel;
      };
      executor.forward = async (target, host, port) =>
        count(target.envId, await h.executor.forward(target, host, port));
      executor.relay = async (target, script) =>
        count(target.envId, await h.executor.relay(target, script));
      const sync = startSync({ resyncSeconds: 600, apiTls }, executor);
      await env.student.createNamespacedService({
        namespace: 'app',
        body: service('idle', [{ port: 80 }]),
      });
      await untilNames(env, ['idle-x-app-x-80'], 'idle mirrored');
      // The list's channel is closed once the list is read; only the watch's stays.
      await h.until(async () => open.size === 1, 'one channel held');
      await new Promise((r) => setTimeout(r, 500));
      expect(open.size).toBe(1);

      h.sim.faults.dropStudentWatches(env.namespace);
      await env.student.createNamespacedService({
        namespace: 'app',
        body: service('after', [{ port: 81 }]),
      });
      await untilNames(env, ['after-x-app-x-81', 'idle-x-app-x-80'], 'after mirrored');
      await h.until(async () => open.size === 1, 'one channel held after the drop');
      await new Promise((r) => setTimeout(r, 500));
      expect(open.size).toBe(1);
      await stopSync(sync);
      await h.until(async () => open.size === 0, 'no channel after stop');
    },
  );

  it('resumes when the student kills the relay on their control plane, and mirrors what changed meanwhile', async () => {
    const env = await active('relaykill');
    const sync = startSync({ resyncSeconds: 600 });
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('before', [{ port: 80 }]),
    });
    await untilNames(env, ['before-x-app-x-80'], 'before mirrored');
    // What a student sees in `ps`, and what they may kill: labvirt's relay, by its name.
    const ps = await h.executor.exec(env.controlPlane, 'ps -eo args', { timeoutMs: 10_000 });
    expect(ps.stdout).toMatch(/^labvirt-sync-relay s_client -quiet .*-connect 127\.0\.0\.1:6443/m);
    expect(ps.stdout).not.toMatch(/BEGIN|PRIVATE|defunct/);
    // It runs as labvirt's login user, not through sudo (which would set
    // USER=root and SUDO_USER): it needs no privilege, and sudo costs a
    // process and an auth-log line on the student's node per request.
    const user = await h.executor.exec(
      env.controlPlane,
      "for p in $(pgrep -f '^labvirt-sync-relay '); do tr '\\0' '\\n' < /proc/$p/environ | grep -E '^(USER|SUDO_USER)='; done | sort -u",
      { timeoutMs: 10_000 },
    );
    expect(user.stdout).toBe('USER=labvirt\n');
    const killed = await h.executor.exec(env.controlPlane, "pkill -f '^labvirt-sync-relay '", {
      timeoutMs: 10_000,
    });
    expect(killed.exitCode).toBe(0);
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('after', [{ port: 81 }]),
    });
    await untilNames(env, ['after-x-app-x-81', 'before-x-app-x-80'], 'after mirrored');
    await stopSync(sync);
  });

  it('follows the host client’s one Namespace watch (none of its own), and stops watching an env whose Namespace goes', async () => {
    // A host client of its own, counting every Namespace list and watch from its first request.
    const namespaceRequests: string[] = [];
    const host = new HostCluster(h.host.kubeConfig, {
      logger: silentLogger(),
      onRequest: (verb, resource) => {
        if (resource === 'Namespace' && (verb === 'list' || verb === 'watch'))
          namespaceRequests.push(verb);
      },
    });
    const syncs = [1, 2].map(
      () =>
        new NodePortSync({
          config: h.config,
          cluster: host,
          executor: h.executor,
          events: bus,
          logger,
        }),
    );
    try {
      for (const s of syncs) s.start();
      // Teardown's use of the same watch (as in labvirt serve).
      await host.namespaces().synced();
      const before = syncs.map((s) => s.watchedEnvs);
      // An active env's Namespace alone: no VMs (its student watch keeps retrying, enough here),
      // so it goes at once when deleted.
      const namespace = envNamespace(h.config, 'shared01');
      await h.host.core.createNamespace({
        body: {
          metadata: {
            name: namespace,
            labels: {
              [LABELS.env]: 'shared01',
              [LABELS.managedBy]: MANAGED_BY,
              [LABELS.state]: 'active',
            },
          },
        },
      });
      await h.until(
        async () => syncs.every((s, i) => s.watchedEnvs === before[i]! + 1),
        'both syncs watching the env',
      );
      // One list and one watch for the whole process (with an informer per sync, as before: six).
      expect(namespaceRequests).toEqual(['list', 'watch']);
      await h.host.core.deleteNamespace({ name: namespace });
      await h.until(
        async () => syncs.every((s, i) => s.watchedEnvs === before[i]),
        'the env no longer watched once its Namespace is gone',
      );
    } finally {
      for (const s of syncs) await s.stop();
      await host.close();
    }
  });

  it('removes every mirror and its policy when the session ends (the namespace stays)', async () => {
    const env = await active('ending01');
    const sync = startSync();
    await env.student.createNamespacedService({
      namespace: 'app',
      body: service('web', [{ port: 80 }, { port: 443 }]),
    });
    await untilNames(env, ['web-x-app-x-443', 'web-x-app-x-80'], 'mirrored');
    await h.until(
      async () =>
        (await net.readNamespacedNetworkPolicy({
          namespace: env.namespace,
          name: MIRROR_POLICY,
        })) !== undefined,
      'policy',
    );
    const watched = sync.watchedEnvs;
    await h.setState(env, 'releasing');
    await untilNames(env, [], 'mirrors removed at session end');
    await h.until(
      async () =>
        net.readNamespacedNetworkPolicy({ namespace: env.namespace, name: MIRROR_POLICY }).then(
          () => false,
          () => true,
        ),
      'policy removed at session end',
    );
    expect(await h.host.getNamespace(env.namespace)).toBeDefined();
    expect(sync.watchedEnvs).toBe(watched - 1);
    await stopSync(sync);
  });
});
