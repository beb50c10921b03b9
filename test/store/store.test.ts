import { describe, expect, it } from 'vitest';
import { Store } from '../../src/store/index.js';
import { useRedis } from '../helpers/redis.js';

const FLAVOR = 'v1.30-3node';
const redis = useRedis();

async function warmPool(store: Store, n: number, flavor = FLAVOR): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const envId = `env${String(i).padStart(5, '0')}`;
    await store.createEnv({ envId, flavor, createdAt: 1000 + i });
    await store.setEnvState(envId, 'booting', { expected: 'provisioning' });
    const r = await store.markEnvWarm(envId, { expected: 'booting', now: 2000 + i });
    expect(r.ok).toBe(true);
    ids.push(envId);
  }
  return ids;
}

function request(
  store: Store,
  student: string,
  i: number,
  extra: Partial<Parameters<Store['requestSession']>[0]> = {},
) {
  return store.requestSession({
    sessionId: `s-${String(i).padStart(10, '0')}`,
    student,
    labId: 'broken-kubelet',
    flavor: FLAVOR,
    requestId: `req-${i}`,
    publicKey: 'ssh-ed25519 AAAA',
    maxPerStudent: 1,
    now: 10_000 + i,
    ...extra,
  });
}

describe('Store: claiming', () => {
  it('serves 200 concurrent starts from a pool of 20: no env twice, the rest wait in order and are served in order', async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 20);
    // Ten connections firing at once, like ten replicas.
    const stores = Array.from({ length: 10 }, () => new Store(redis.connect(), 'lv'));
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => request(stores[i % 10]!, `student${i}`, i)),
    );
    const claimed = results.filter((r) => r.outcome === 'claimed');
    const waiting = results.filter((r) => r.outcome === 'waiting');
    expect(claimed).toHaveLength(20);
    expect(waiting).toHaveLength(180);
    const envs = claimed.map((r) => (r.outcome === 'claimed' ? r.session.envId : ''));
    expect(new Set(envs).size).toBe(20);
    // Positions are 1..180 without gaps or repeats.
    const positions = waiting
      .map((r) => (r.outcome === 'waiting' ? r.position : 0))
      .sort((a, b) => a - b);
    expect(positions).toEqual(Array.from({ length: 180 }, (_, i) => i + 1));
    // The line order is the order in which Redis saw the requests.
    const byPosition = waiting
      .map(
        (r) => (r.outcome === 'waiting' ? { id: r.session.id, position: r.position } : undefined)!,
      )
      .sort((a, b) => a.position - b.position);
    // New envs turn warm one by one: each goes to the head of the line.
    const served: string[] = [];
    for (let i = 0; i < 180; i++) {
      const envId = `new${i}`;
      await store.createEnv({ envId, flavor: FLAVOR, createdAt: 50_000 + i });
      await store.setEnvState(envId, 'booting');
      const r = await store.markEnvWarm(envId, { expected: 'booting' });
      served.push(r.servedSessionId!);
    }
    expect(served).toEqual(byPosition.map((w) => w.id));
    expect(await store.waitingCount(FLAVOR)).toBe(0);
    const counts = await store.countByState(FLAVOR);
    expect(counts.claimed).toBe(200);
    expect(counts.warm).toBe(0);
  });

  it('holds the per-student limit under 20 concurrent requests from one student', async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 5);
    const stores = Array.from({ length: 5 }, () => new Store(redis.connect(), 'lv'));
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(stores[i % 5]!, 'alice', i, { maxPerStudent: 2 }),
      ),
    );
    const granted = results.filter((r) => r.outcome === 'claimed' || r.outcome === 'waiting');
    expect(granted).toHaveLength(2);
    expect(results.filter((r) => r.outcome === 'limit')).toHaveLength(18);
    expect((await store.countByState(FLAVOR)).warm).toBe(3);
  });

  it('returns the same session for a repeated request id (Slack retries)', async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 2);
    const first = await request(store, 'bob', 1);
    const again = await request(store, 'bob', 2, { requestId: 'req-1' });
    expect(again.outcome).toBe('existing');
    expect(again.outcome === 'existing' && again.session.id).toBe(
      first.outcome === 'claimed' && first.session.id,
    );
    expect((await store.countByState(FLAVOR)).warm).toBe(1);
  });

  it('reports the position and an estimate from recorded provision times', async () => {
    const store = new Store(redis.client, 'lv');
    await store.recordProvisionDuration(FLAVOR, 60_000);
    await store.createEnv({ envId: 'p1', flavor: FLAVOR, createdAt: 1 });
    await store.createEnv({ envId: 'p2', flavor: FLAVOR, createdAt: 2 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await request(store, `s${i}`, i);
      ids.push(r.outcome === 'waiting' ? r.session.id : '');
    }
    const third = await store.queuePosition(ids[2]!);
    expect(third).toEqual({ position: 3, estimateSeconds: 120 });
    const first = await store.queuePosition(ids[0]!);
    expect(first).toEqual({ position: 1, estimateSeconds: 60 });
    // Leaving the line moves everyone up.
    await store.endSession(ids[0]!, 'cancelled');
    expect((await store.queuePosition(ids[2]!))?.position).toBe(2);
  });
});

describe('Store: lifecycle', () => {
  it('ends a session once, frees the student, and marks the env releasing', async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 1);
    const r = await request(store, 'carol', 1);
    const id = r.outcome === 'claimed' ? r.session.id : '';
    const ended = await store.endSession(id, 'released');
    expect(ended).toMatchObject({ student: 'carol', envId: 'env00000' });
    expect(await store.endSession(id, 'released')).toBeUndefined();
    expect((await store.getEnv('env00000'))?.state).toBe('releasing');
    expect((await store.getSession(id))?.state).toBe('ended');
    // The student may start again.
    const next = await request(store, 'carol', 2);
    expect(next.outcome).toBe('waiting');
  });

  it('never writes into a session that ends while the write is on its way', async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 3);
    const ids: string[] = [];
    for (const [i, student] of ['dan', 'erin', 'frank'].entries()) {
      const r = await request(store, student, 10 + i);
      ids.push(r.outcome === 'claimed' ? r.session.id : '');
    }
    // The scripts are loaded first, so the writes below and the ends reach
    // Redis in the order they are issued, on one connection: each write is
    // sent just before the end of its session.
    await store.endSession(ids[2]!, 'cancelled');
    await store.setSessionFields(ids[2]!, { warnedAt: 1 });
    await Promise.all([
      store.setSessionState(ids[0]!, 'preparing'),
      store.endSession(ids[0]!, 'cancelled'),
      store.setSessionFields(ids[1]!, { expiresAt: 99_000, warnedAt: 0 }),
      store.setSessionGuests(ids[1]!, { 'worker-1': { ip: '10.0.0.9' } }),
      store.endSession(ids[1]!, 'expired'),
    ]);
    const [cancelled, expired] = await Promise.all([
      store.getSession(ids[0]!),
      store.getSession(ids[1]!),
    ]);
    expect(cancelled?.state).toBe('ended');
    expect(expired?.state).toBe('ended');
    // Written before the end: kept, as any field an ended session had.
    expect(expired?.expiresAt).toBe(99_000);
    // An ended session is not in the expiry index, whatever was written first.
    expect(await redis.client.zscore(store.keys.expiry, ids[1]!)).toBeNull();
    // And a write after the end changes nothing.
    await store.setSessionFields(ids[1]!, { solvedAt: 5, score: 1, maxScore: 1 });
    expect((await store.getSession(ids[1]!))?.solvedAt).toBeUndefined();
  });

  it("records each node's first VMI as its identity and a new one as a restart, once whichever replica sees it", async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 1);
    const r = await request(store, 'gina', 20);
    const id = r.outcome === 'claimed' ? r.session.id : '';
    const envId = 'env00000';
    const nodes = (cp: string, w1: string, w2: string) => [
      { node: 'control-plane', uid: cp },
      { node: 'worker-1', uid: w1 },
      { node: 'worker-2', uid: w2 },
    ];
    // Not active yet: nothing is recorded.
    expect(await store.recordNodeVmis(id, { envId, at: 1, nodes: nodes('a', 'b', 'c') })).toEqual(
      [],
    );
    expect(
      await store.activateSession(id, { envId, readyAt: 2, expiresAt: 9_000, connection: '{}' }),
    ).toBe(true);
    expect(await store.recordNodeVmis(id, { envId, at: 3, nodes: nodes('a', 'b', 'c') })).toEqual(
      [],
    );
    expect((await store.getSession(id))?.nodeRestarts).toBeUndefined();
    // Two workers replaced, seen by five replicas at once.
    const replicas = Array.from({ length: 5 }, () => new Store(redis.connect(), 'lv'));
    const seen = await Promise.all(
      replicas.map((s, i) =>
        s.recordNodeVmis(id, { envId, at: 10 + i, nodes: nodes('a', 'b2', 'c2') }),
      ),
    );
    expect(seen.flat().sort()).toEqual(['worker-1', 'worker-2']);
    expect(seen.filter((nodesSeen) => nodesSeen.length > 0)).toHaveLength(1);
    // A replica whose watch still shows the old VMIs reports nothing.
    expect(await store.recordNodeVmis(id, { envId, at: 20, nodes: nodes('a', 'b', 'c') })).toEqual(
      [],
    );
    const restarts = (await store.getSession(id))?.nodeRestarts ?? [];
    expect(restarts.map((x) => x.node).sort()).toEqual(['worker-1', 'worker-2']);
    // Another env's VMIs are not this session's.
    expect(
      await store.recordNodeVmis(id, { envId: 'env99999', at: 30, nodes: nodes('x', 'y', 'z') }),
    ).toEqual([]);
  });

  it('moves a student whose setup failed to the next warm env, or to the head of the line', async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 2);
    const a = await request(store, 'dave', 1);
    const sid = a.outcome === 'claimed' ? a.session.id : '';
    const first = a.outcome === 'claimed' ? a.session.envId! : '';
    const moved = await store.reassignSession(sid, first);
    expect(moved.newEnvId).toBeDefined();
    expect(moved.newEnvId).not.toBe(first);
    expect((await store.getEnv(first))?.state).toBe('failed');
    // Someone else now waits; a second failure puts dave back at the head.
    const w = await request(store, 'erin', 2);
    expect(w.outcome).toBe('waiting');
    const again = await store.reassignSession(sid, moved.newEnvId!);
    expect(again.newEnvId).toBeUndefined();
    expect((await store.queuePosition(sid))?.position).toBe(1);
    expect((await store.getSession(sid))?.moves).toBe(2);
  });

  it('refuses stale state writes (compare-and-set)', async () => {
    const store = new Store(redis.client, 'lv');
    await store.createEnv({ envId: 'x', flavor: FLAVOR, createdAt: 1 });
    expect(await store.setEnvState('x', 'booting', { expected: 'provisioning' })).toBe(true);
    expect(await store.setEnvState('x', 'releasing', { expected: 'provisioning' })).toBe(false);
    expect(await store.setEnvState('x', 'releasing')).toBe(true);
    // A late provision worker cannot make a releasing env warm.
    expect((await store.markEnvWarm('x', { expected: 'booting' })).ok).toBe(false);
    expect((await store.countByState(FLAVOR)).releasing).toBe(1);
  });

  it('counts hints and stops at the last one', async () => {
    const store = new Store(redis.client, 'lv');
    await warmPool(store, 1);
    const r = await request(store, 'fay', 1);
    const id = r.outcome === 'claimed' ? r.session.id : '';
    expect(await store.takeHint(id, 2)).toBe(1);
    expect(await store.takeHint(id, 2)).toBe(2);
    expect(await store.takeHint(id, 2)).toBeUndefined();
  });

  it('rebuilds its indexes from a cluster snapshot after Redis lost everything', async () => {
    const store = new Store(redis.client, 'lv');
    await redis.client.flushall();
    expect(await store.isInitialized()).toBe(false);
    await store.rebuildFromSnapshot({
      envs: [
        { envId: 'w1', flavor: FLAVOR, state: 'warm', createdAt: 5 },
        { envId: 'a1', flavor: FLAVOR, state: 'active', createdAt: 6, sessionId: 's-aaaaaaaaaa' },
      ],
      sessions: [
        {
          id: 's-aaaaaaaaaa',
          student: 'gus',
          labId: 'broken-kubelet',
          flavor: FLAVOR,
          envId: 'a1',
          state: 'active',
          createdAt: 1,
          readyAt: 2,
          expiresAt: 10_000,
          publicKey: 'ssh-ed25519 AAAA',
          hintsUsed: 1,
        },
      ],
    });
    expect(await store.isInitialized()).toBe(true);
    expect(await store.countByState(FLAVOR)).toMatchObject({ warm: 1, active: 1 });
    expect((await store.getSession('s-aaaaaaaaaa'))?.hintsUsed).toBe(1);
    expect((await store.sessionsExpiringBefore(20_000)).map((s) => s.id)).toEqual(['s-aaaaaaaaaa']);
    // The student's limit still holds after the rebuild.
    const again = await request(store, 'gus', 9);
    expect(again.outcome).toBe('limit');
    // And the warm env can be claimed.
    expect((await request(store, 'hal', 10)).outcome).toBe('claimed');
  });
});
