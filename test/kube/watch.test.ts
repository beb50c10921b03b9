import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger } from '../helpers/log-lines.js';
import {
  HostCluster,
  SharedWatch,
  loadKubeConfig,
  type SharedWatchOptions,
  type WatchedObject,
} from '../../src/kube/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';

const MANAGED = 'app.kubernetes.io/managed-by=labvirt';

interface NamespaceView {
  name: string;
  state?: string;
  deleting: boolean;
}

/**
 * The shared watch against the simulator's real list/watch endpoints: one
 * stream for a kind, waiters woken per namespace, restarts after a cut, a
 * relist after 410, and the periodic relist that finds what the stream missed.
 */
describe('SharedWatch', () => {
  let dir: string;
  let sim: SimHandle;
  let cluster: HostCluster;
  const watches: SharedWatch<NamespaceView>[] = [];
  const requests: string[] = [];
  let seq = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-watch-'));
    // A short history: a watch resumed after a few changes elsewhere gets 410.
    sim = await startSim({ dir: join(dir, 'sim'), speed: 1000, guests: false, historyLimit: 5 });
    cluster = new HostCluster(loadKubeConfig({ kubeconfig: sim.kubeconfigPath }), {
      logger: silentLogger(),
    });
  });
  afterEach(async () => {
    await Promise.all(watches.splice(0).map((w) => w.stop()));
    requests.length = 0;
  });
  afterAll(async () => {
    await cluster.close();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function namespaceWatch(
    extra: Partial<SharedWatchOptions<NamespaceView>> = {},
  ): SharedWatch<NamespaceView> {
    const watch = new SharedWatch<NamespaceView>({
      kubeConfig: cluster.kubeConfig,
      kind: 'Namespace',
      path: '/api/v1/namespaces',
      clusterScoped: true,
      labelSelector: MANAGED,
      list: async () =>
        (await cluster.core.listNamespace({ labelSelector: MANAGED })) as {
          items: WatchedObject[];
        },
      project: (obj) => {
        const meta = obj.metadata as {
          name?: string;
          labels?: Record<string, string>;
          deletionTimestamp?: unknown;
        };
        return {
          name: meta.name ?? '',
          state: meta.labels?.['labvirt.io/state'],
          deleting: Boolean(meta.deletionTimestamp),
        };
      },
      relistMs: 60_000,
      restartDelayMs: 50,
      logger: silentLogger(),
      onRequest: (verb, kind) => requests.push(`${verb} ${kind}`),
      ...extra,
    });
    watches.push(watch);
    watch.start();
    return watch;
  }

  async function createNamespace(label = 'x'): Promise<string> {
    const name = `watch-${process.pid}-${seq++}`;
    await cluster.core.createNamespace({
      body: {
        metadata: {
          name,
          labels: { 'app.kubernetes.io/managed-by': 'labvirt', 'labvirt.io/state': label },
        },
      },
    });
    return name;
  }

  function relabel(name: string, state: string): Promise<void> {
    return cluster.patchNamespaceMeta(name, { labels: { 'labvirt.io/state': state } });
  }

  /** Resolves true if `namespace` changes within `ms`, false otherwise. */
  async function changesWithin(
    watch: SharedWatch<NamespaceView>,
    namespace: string,
    ms: number,
    act: () => Promise<unknown> = async () => undefined,
  ): Promise<boolean> {
    let woke = false;
    const waiting = watch.nextChange(namespace, ms).then(() => (woke = true));
    const started = Date.now();
    await act();
    await Promise.race([waiting, new Promise((r) => setTimeout(r, ms))]);
    // nextChange also resolves at its own timeout: only an earlier wake counts.
    return woke && Date.now() - started < ms - 20;
  }

  async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('lists once, then hands each change to the waiters of that namespace only', async () => {
    const a = await createNamespace();
    const b = await createNamespace();
    const watch = namespaceWatch();
    await watch.synced();
    expect(watch.get(a, a)).toEqual({ name: a, state: 'x', deleting: false });
    expect(watch.get(b, b)).toEqual({ name: b, state: 'x', deleting: false });

    let bWoke = false;
    const bWaits = watch.nextChange(b, 3000).then(() => (bWoke = true));
    const aChanged = await changesWithin(watch, a, 3000, () => relabel(a, 'y'));
    expect(aChanged).toBe(true);
    expect(watch.get(a, a)?.state).toBe('y');
    expect(bWoke).toBe(false);
    await bWaits;

    // Objects the label selector leaves out are not watched.
    await cluster.core.createNamespace({ body: { metadata: { name: `unmanaged-${seq++}` } } });
    const c = await createNamespace();
    await until(() => watch.get(c, c) !== undefined, 'the new namespace');
    expect(watch.inNamespace(`unmanaged-${seq - 2}`)).toEqual([]);
    // One list and one stream for all of it.
    expect(requests).toEqual(['list Namespace', 'watch Namespace']);
  });

  it('tells change listeners the namespace of every change, until they unsubscribe', async () => {
    const watch = namespaceWatch();
    await watch.synced();
    const seen: string[] = [];
    const off = watch.onChange((namespace) => seen.push(namespace));
    const a = await createNamespace();
    await until(() => seen.includes(a), 'the new namespace reported');
    await relabel(a, 'y');
    await until(() => seen.filter((n) => n === a).length >= 2, 'the relabel reported');
    off();
    const count = seen.length;
    const b = await createNamespace();
    await until(() => watch.get(b, b) !== undefined, 'the namespace made after unsubscribing');
    expect(seen.length).toBe(count);
  });

  it('opens the stream again after the server cuts it, and sees later changes', async () => {
    const watch = namespaceWatch();
    await watch.synced();
    // The stream is open once a change comes through it.
    const first = await createNamespace();
    await until(() => watch.get(first, first) !== undefined, 'the stream open');
    const restarts = watch.restartCount;
    sim.faults.dropWatches();
    await until(() => watch.restartCount > restarts, 'a restart');
    const name = await createNamespace();
    await until(() => watch.get(name, name) !== undefined, 'the namespace made after the cut');
    expect(requests.filter((r) => r === 'watch Namespace').length).toBeGreaterThanOrEqual(2);
  });

  it('lists again when resuming is refused with 410 Expired, without losing changes', async () => {
    const existing = await createNamespace();
    // A stream of one second: it resumes from its last version, which the
    // changes below (other kinds, not watched) push out of the history.
    const watch = namespaceWatch({ streamSeconds: 1 });
    await watch.synced();
    const lists = watch.relistCount;
    for (let i = 0; i < 12; i++) {
      await cluster.core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: `churn-${process.pid}-${seq}-${i}` } },
      });
    }
    await until(() => watch.relistCount > lists, 'a relist after 410', 8000);
    // Changed after the refusal: the watch goes on from the relist.
    await relabel(existing, 'z');
    await until(() => watch.get(existing, existing)?.state === 'z', 'the change after the relist');
  });

  it('finds a change the stream never delivered at the next periodic relist', async () => {
    const name = await createNamespace();
    const watch = namespaceWatch({ relistMs: 400 });
    await watch.synced();
    expect(watch.get(name, name)?.deleting).toBe(false);
    // Changed in the store behind the watch's back: no event is sent for it.
    const stored = sim.store.peek('namespaces', undefined, name)!;
    stored.metadata.deletionTimestamp = new Date().toISOString();
    stored.metadata.resourceVersion = String(sim.store.resourceVersion + 1);
    const woke = await changesWithin(watch, name, 3000);
    expect(woke).toBe(true);
    expect(watch.get(name, name)?.deleting).toBe(true);
  });

  it('keeps trying after a failed list and is synced once one succeeds, warning once', async () => {
    let failures = 4;
    const { logger, lines } = capturingLogger('debug');
    const watch = namespaceWatch({
      logger,
      list: async () => {
        if (failures-- > 0) throw new Error('connection refused');
        return (await cluster.core.listNamespace({ labelSelector: MANAGED })) as {
          items: WatchedObject[];
        };
      },
    });
    await watch.synced();
    expect(failures).toBe(-1);
    expect(watch.relistCount).toBe(1);
    // An outage is one warning, its retries debug lines, its end one info line.
    await until(() => lines.some((l) => l.msg === 'watch working again'), 'the recovery line');
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [40, 'watch failed; listing again (until it works: debug level)'],
      [20, 'watch failed; listing again'],
      [20, 'watch failed; listing again'],
      [20, 'watch failed; listing again'],
      [30, 'watch working again'],
    ]);
    expect(lines[4]!.outageSeconds).toBeGreaterThan(0);
  });

  it('HostCluster shares one watch per kind and counts its requests', async () => {
    const counted: string[] = [];
    cluster.onRequest((verb, kind) => counted.push(`${verb} ${kind}`));
    expect(cluster.namespaces()).toBe(cluster.namespaces());
    expect(cluster.vmis()).toBe(cluster.vmis());
    await Promise.all([cluster.namespaces().synced(), cluster.vmis().synced()]);
    await until(() => counted.length >= 4, 'both streams');
    expect(counted.sort()).toEqual([
      'list Namespace',
      'list VirtualMachineInstance',
      'watch Namespace',
      'watch VirtualMachineInstance',
    ]);
  });
});
