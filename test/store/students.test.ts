import { describe, expect, it } from 'vitest';
import { Store } from '../../src/store/index.js';
import { useRedis } from '../helpers/redis.js';

const redis = useRedis();

/** What the Slack front end keeps in Redis: keys, history, one-time links, replays, rate limits. */
describe('store: students and Slack bookkeeping', () => {
  const store = () => new Store(redis.client, 'students-test');

  it('keeps one registered public key per student', async () => {
    const s = store();
    expect(await s.studentPublicKey('T1.U1')).toBeUndefined();
    await s.setStudentPublicKey('T1.U1', 'ssh-ed25519 AAAA1');
    await s.setStudentPublicKey('T1.U1', 'ssh-ed25519 AAAA2');
    expect(await s.studentPublicKey('T1.U1')).toBe('ssh-ed25519 AAAA2');
    expect(await s.studentPublicKey('T1.U2')).toBeUndefined();
  });

  it('remembers the latest sessions of a student, newest first, ended ones included', async () => {
    const s = store();
    for (let i = 0; i < 25; i++) {
      const sessionId = `s-${String(i).padStart(10, '0')}`;
      await s.requestSession({
        sessionId,
        student: 'T1.U1',
        labId: 'lab',
        flavor: 'v1.30-1node',
        requestId: sessionId,
        publicKey: 'k',
        maxPerStudent: 100,
        now: 1000 + i,
      });
      await s.rememberSession('T1.U1', sessionId, 1000 + i);
      if (i % 2 === 0) await s.endSession(sessionId, 'released', 2000 + i);
    }
    const recent = await s.recentSessions('T1.U1', 5);
    expect(recent.map((r) => r.id)).toEqual([
      's-0000000024',
      's-0000000023',
      's-0000000022',
      's-0000000021',
      's-0000000020',
    ]);
    expect(recent[0]!.state).toBe('ended');
    // Only the latest 20 are kept.
    expect(await s.recentSessions('T1.U1', 100)).toHaveLength(20);
    expect(await s.recentSessions('T1.U2', 5)).toEqual([]);
  });

  it('hands out a key link once, even to concurrent takers', async () => {
    const s = store();
    await s.putKeyLink('token-a', 'PRIVATE', 60);
    const takes = await Promise.all(Array.from({ length: 10 }, () => s.takeKeyLink('token-a')));
    expect(takes.filter((t) => t === 'PRIVATE')).toHaveLength(1);
    expect(takes.filter((t) => t === 'taken')).toHaveLength(9);
    expect(await s.takeKeyLink('token-b')).toBe('unknown');
  });

  it('marks a thing seen once, and counts requests per window', async () => {
    const s = store();
    const marks = await Promise.all([1, 2, 3].map(() => s.markSeen('sig-1', 10)));
    expect(marks.filter(Boolean)).toHaveLength(1);
    expect(await s.markSeen('sig-2', 10)).toBe(true);
    const t = 1_800_000_000_000;
    const counts = [];
    for (let i = 0; i < 3; i++) counts.push(await s.countRequest('T1.U1', 60, t));
    expect(counts).toEqual([1, 2, 3]);
    expect(await s.countRequest('T1.U2', 60, t)).toBe(1);
    expect(await s.countRequest('T1.U1', 60, t + 60_000)).toBe(1);
  });

  it('keeps the latest failures, newest first', async () => {
    const s = store();
    for (let i = 0; i < 60; i++) await s.recordFailure({ at: i, what: `failure ${i}` });
    const latest = await s.recentFailures(3);
    expect(latest.map((f) => f.what)).toEqual(['failure 59', 'failure 58', 'failure 57']);
    expect(await s.recentFailures(100)).toHaveLength(50);
  });

  it('records why a session failed and its solved check', async () => {
    const s = store();
    await s.requestSession({
      sessionId: 's-solved0001',
      student: 'T1.U1',
      labId: 'lab',
      flavor: 'v1.30-1node',
      requestId: 'r1',
      publicKey: 'k',
      maxPerStudent: 5,
      now: 1,
    });
    await s.setSessionFields('s-solved0001', { solvedAt: 5, score: 3, maxScore: 4 });
    await s.endSession('s-solved0001', 'failed', 9, 'the env vanished');
    expect(await s.getSession('s-solved0001')).toMatchObject({
      solvedAt: 5,
      score: 3,
      maxScore: 4,
      endedReason: 'failed',
      endedDetail: 'the env vanished',
      endedAt: 9,
    });
  });
});
