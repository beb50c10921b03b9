import { CoreV1Api, Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { itSimOnly, startTarget, type ConformanceTarget } from './target.js';

interface Seen {
  type: string;
  name?: string;
  resourceVersion?: string;
  annotations?: Record<string, string>;
}

/**
 * Watch bookmarks: progress notes carrying only a resourceVersion, from which
 * a watch can resume without replaying what it already saw. A real API server
 * sends them about once a minute and ~2 s before a watch's `timeoutSeconds`
 * ends it, and so does the sim. client-node's Watch gives up on a stream
 * silent for 30 s, so the watch here ends (and bookmarks) well before that.
 */
describe('conformance: watch bookmarks', () => {
  let target: ConformanceTarget;
  let core: CoreV1Api;
  let ns: string;
  const aborts: (() => void)[] = [];

  beforeAll(async () => {
    target = await startTarget();
    core = target.kc.makeApiClient(CoreV1Api);
    ns = await target.createNamespace('bookmarks');
  });
  afterAll(async () => {
    for (const abort of aborts) abort();
    await target?.stop();
  });

  const watchConfigMaps = async (
    params: Record<string, string | number | boolean | undefined>,
    seen: Seen[],
  ) => {
    const req = await new Watch(target.kc).watch(
      `/api/v1/namespaces/${ns}/configmaps`,
      params,
      (type, obj: { metadata?: Seen & { name?: string } }) =>
        seen.push({
          type,
          name: obj.metadata?.name,
          resourceVersion: obj.metadata?.resourceVersion,
          annotations: obj.metadata?.annotations,
        }),
      () => undefined,
    );
    aborts.push(() => req.abort());
  };

  it('sends BOOKMARK events with a resourceVersion to resume from, and nothing else in them', async () => {
    const list = await core.listNamespacedConfigMap({ namespace: ns });
    const seen: Seen[] = [];
    await watchConfigMaps(
      {
        allowWatchBookmarks: true,
        resourceVersion: list.metadata?.resourceVersion,
        timeoutSeconds: 5,
      },
      seen,
    );
    await target.until(async () => seen.some((e) => e.type === 'BOOKMARK'), 'a bookmark', 15_000);
    const bookmark = seen.find((e) => e.type === 'BOOKMARK')!;
    expect(Number(bookmark.resourceVersion)).toBeGreaterThanOrEqual(
      Number(list.metadata?.resourceVersion),
    );
    expect(bookmark.annotations?.['k8s.io/initial-events-end']).toBeUndefined();

    // Resuming from the bookmark replays nothing older and sees what comes after.
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'after' } } });
    const resumed: Seen[] = [];
    await watchConfigMaps({ resourceVersion: bookmark.resourceVersion }, resumed);
    await target.until(
      async () => resumed.some((e) => e.type === 'ADDED' && e.name === 'after'),
      'the object made after the bookmark',
    );
    expect(resumed.filter((e) => e.name === 'kube-root-ca.crt')).toEqual([]);
  });

  itSimOnly('ends the initial state of a watch-list with the annotated bookmark', async () => {
    const seen: Seen[] = [];
    await watchConfigMaps(
      {
        allowWatchBookmarks: true,
        sendInitialEvents: true,
        resourceVersionMatch: 'NotOlderThan',
        resourceVersion: '',
      },
      seen,
    );
    await target.until(
      async () => seen.some((e) => e.annotations?.['k8s.io/initial-events-end'] === 'true'),
      'initial-events-end bookmark',
    );
    const end = seen.findIndex((e) => e.annotations?.['k8s.io/initial-events-end'] === 'true');
    expect(seen.slice(0, end).map((e) => e.name)).toEqual(
      expect.arrayContaining(['after', 'kube-root-ca.crt']),
    );
    expect(seen.slice(0, end).every((e) => e.type === 'ADDED')).toBe(true);
  });
});
