import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startLabvirt, type LabvirtHandle } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { EventBus, type LabvirtEvent } from '../../src/events/index.js';
import { silentLogger } from '../../src/log/index.js';
import { startRedisServer, type RedisServerHandle } from '../../src/redis/index.js';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { startNotifier, type Notifier } from '../../src/slack/index.js';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { fillPool, serveConfigFor } from '../helpers/stack.js';
import { shownText, startAsSlackUser } from './helpers.js';
import { spawnLabvirt } from '../helpers/cli-env.js';

const FLAVOR = 'v1.30-1node';
const API_TOKEN = 'replicas-test-token-0123456789';
const BOT_TOKEN = 'xoxb-replicas-test';

async function until<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  ms = 45_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Each version of the status message differs from the one before: one edit per change. */
function expectOneEditPerChange(versions: { text?: string; blocks?: unknown[] }[]): void {
  const shown = versions.map((v) => JSON.stringify(v.blocks));
  for (let i = 1; i < shown.length; i++) expect(shown[i]).not.toBe(shown[i - 1]);
}

/**
 * Several labvirt replicas on one Redis and one simulated cluster: whichever
 * replica makes a change, exactly one of them edits the student's message,
 * and a replica killed mid-delivery loses nothing.
 */
describe('Slack notifications across replicas', () => {
  let dir: string;
  let redis: RedisServerHandle;
  let sim: SimHandle;
  let fake: FakeSlack;
  let configFile: string;
  const replicas: LabvirtHandle[] = [];
  const extra: Notifier[] = [];
  let child: ChildProcess | undefined;
  let childOutput = '';

  const config = () => loadConfig({ file: configFile, env: {} });
  const replica = async (
    roles: Parameters<typeof startLabvirt>[0]['roles'],
    slack = true,
  ): Promise<LabvirtHandle> => {
    const handle = await startLabvirt({
      config: config(),
      logger: silentLogger(),
      apiToken: API_TOKEN,
      resolver: sim.resolveGuest,
      roles: { api: false, gateway: false, scheduler: false, ...roles },
      slack: slack ? { botToken: BOT_TOKEN } : undefined,
    });
    replicas.push(handle);
    return handle;
  };
  /** Replica B: a `labvirt serve` process running the workers and delivering to Slack. */
  const spawnServe = (): ChildProcess => {
    const proc = spawnLabvirt(
      ['serve', '--config', configFile, '--no-api', '--no-gateway', '--no-scheduler'],
      {
        env: { LABVIRT_API_TOKEN: API_TOKEN, SLACK_BOT_TOKEN: BOT_TOKEN },
        onOutput: (text) => (childOutput += text),
      },
    );
    return proc;
  };
  // Generous: a `labvirt serve` child loads the whole app first (through
  // tsx when dist/ is stale), which takes long on a loaded machine.
  const warm = (via: LabvirtHandle, n = 1) => fillPool(via, FLAVOR, n, { timeoutMs: 120_000 });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-replicas-'));
    redis = await startRedisServer();
    sim = await startSim({ dir: join(dir, 'sim'), speed: 200 });
    fake = await startFakeSlack();
    configFile = join(dir, 'labvirt.yaml');
    writeFileSync(
      configFile,
      stringify(
        serveConfigFor(sim, redis.url, {
          flavors: {
            [FLAVOR]: { kubernetesVersion: '1.30', nodes: 1, minWarm: 2, maxTotal: 8 },
            'v1.30-3node': { kubernetesVersion: '1.30', nodes: 3, minWarm: 0, maxTotal: 1 },
          },
          pool: { pollSeconds: 0.05, jobLockSeconds: 2 },
          api: { host: '127.0.0.1', port: 0 },
          ssh: {
            gatewayPort: 0,
            bindAddress: '127.0.0.1',
            publicHost: '127.0.0.1',
            hostKey: join(dir, 'hk'),
            orchestratorKey: join(dir, 'ok'),
          },
          slack: { apiUrl: fake.apiUrl },
        }),
      ),
    );
  }, 60_000);

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
    }
    child = undefined;
    for (const n of extra.splice(0)) await n.close();
    for (const r of replicas.splice(0)) await r.stop();
  }, 120_000); // stopping two replicas and a child on a loaded machine
  afterAll(async () => {
    await fake?.close();
    await sim?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a start on replica A prepared by replica B edits the DM once per change', async () => {
    const a = await replica({ api: true, workers: false }); // takes the start, no pool workers
    const b = await replica({ workers: true }); // workers only: provisions and prepares
    const eventsOf = (h: LabvirtHandle) => {
      const seen: LabvirtEvent[] = [];
      h.events.onAny((e) => void seen.push(e));
      return seen;
    };
    const seenA = eventsOf(a);
    const seenB = eventsOf(b);
    await warm(a);

    const user = 'U0R01';
    const s = await startAsSlackUser(a.service, a.notifier!, user, 'fixture-one');
    await until(async () => (await a.service.status(s.id)).state === 'active', 'active');

    const ready = await until(() => {
      const m = fake.messagesTo(user)[0];
      return m && /your cluster is ready/.test(m.text ?? '') ? m : undefined;
    }, 'the DM to show the active session');
    // The work really was split: A claimed, B prepared.
    expect(seenB.some((e) => e.type === 'session.ready' && e.sessionId === s.id)).toBe(true);
    expect(seenA.some((e) => e.type === 'session.ready')).toBe(false);
    await a.service.hint(s.id);
    await until(
      () => shownText(fake.message(ready.channel, ready.ts)!).includes('1 of 2 hints used'),
      'the hint to show',
    );
    await a.service.stop(s.id);
    await until(
      () => fake.messagesTo(user).some((m) => /has ended/.test(m.text ?? '')),
      'the last DM',
    );
    await new Promise((r) => setTimeout(r, 500)); // nothing more arrives late

    const posts = fake.messagesTo(user);
    expect(posts.map((m) => m.text)).toEqual([
      expect.stringMatching(/Fixture one/),
      expect.stringMatching(/has ended/),
    ]);
    const status = posts[0]!;
    const updates = fake.updatesOf(status.channel, status.ts);
    // States shown: claimed/preparing (posted), active, a hint, stopped — never one twice.
    expect(updates.length).toBeGreaterThanOrEqual(3);
    expect(updates.length).toBeLessThanOrEqual(4);
    expectOneEditPerChange(status.versions);
    expect(shownText(status)).toMatch(/Stopped/);
    expect(fake.calls.filter((c) => c.method === 'chat.update' && c.status !== 200)).toHaveLength(
      0,
    );
  }, 90_000);

  it('loses no notification when the delivering replica is killed with SIGKILL mid-call', async () => {
    // Replica A (this process) takes requests and enqueues; replica B, a
    // separate `labvirt serve` process, runs the workers and is the only one
    // delivering to Slack until it dies.
    const a = await replica({ api: true, workers: false }, false);
    const enqueueOnA = await startNotifier({
      connection: { ...redisConnection(redis.url) },
      prefix: `${config().redis.prefix}-jobs`,
      store: a.store,
      service: a.service,
      events: a.events,
      log: silentLogger(),
    });
    extra.push(enqueueOnA);
    child = spawnServe();
    await warm(a).catch((err: Error) => {
      throw new Error(`${err.message}; replica B said:\n${childOutput}`);
    });

    const user = 'U0R02';
    const s = await startAsSlackUser(a.service, enqueueOnA, user, 'fixture-one');
    const ready = await until(
      () => {
        const m = fake.messagesTo(user)[0];
        return m && /your cluster is ready/.test(m.text ?? '') ? m : undefined;
      },
      'B to deliver the active session',
      90_000,
    );

    // Slack turns slow; the hint's edit is in flight in B when B dies.
    fake.setLatency('chat.update', 700);
    const callsBefore = fake.calls.length;
    await a.service.hint(s.id);
    await until(
      () => fake.calls.slice(callsBefore).some((c) => c.method === 'chat.update'),
      'B to call chat.update',
    );
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    fake.setLatency('chat.update', 0);
    await until(() => fake.calls.slice(callsBefore).some((c) => c.status === 0), 'the lost call');
    expect(shownText(fake.message(ready.channel, ready.ts)!)).not.toContain('1 of 2 hints used');

    // Another replica with the bot token takes over delivery (it never saw the hint).
    const takeover = await startNotifier({
      connection: { ...redisConnection(redis.url) },
      prefix: `${config().redis.prefix}-jobs`,
      store: a.store,
      service: a.service,
      events: new EventBus(),
      log: silentLogger(),
      slack: { botToken: BOT_TOKEN, apiUrl: fake.apiUrl },
      jobLockMs: 2000,
      lockMs: 3000,
    });
    extra.push(takeover);
    await until(
      () => shownText(fake.message(ready.channel, ready.ts)!).includes('1 of 2 hints used'),
      'the hint to reach Slack after the crash',
      30_000,
    );
    await a.service.stop(s.id);
    await until(
      () => fake.messagesTo(user).some((m) => /has ended/.test(m.text ?? '')),
      'the last DM',
    );
    expect(fake.messagesTo(user)).toHaveLength(2); // one status message, one goodbye
    expectOneEditPerChange(fake.message(ready.channel, ready.ts)!.versions);
  }, 240_000);
  it('posts one status message when the posting replica dies before it stored the ts', async () => {
    const a = await replica({ api: true, workers: false }, false);
    const enqueueOnA = await startNotifier({
      connection: { ...redisConnection(redis.url) },
      prefix: `${config().redis.prefix}-jobs`,
      store: a.store,
      service: a.service,
      events: a.events,
      log: silentLogger(),
    });
    extra.push(enqueueOnA);
    child = spawnServe();
    await warm(a).catch((err: Error) => {
      throw new Error(`${err.message}; replica B said:\n${childOutput}`);
    });

    // Slack takes B's post at once, but B never hears back: it dies first.
    const user = 'U0R03';
    fake.setAnswerDelay('chat.postMessage', 60_000);
    const callsBefore = fake.calls.length;
    const s = await startAsSlackUser(a.service, enqueueOnA, user, 'fixture-one');
    await until(() => fake.messagesTo(user).length === 1, 'B to post the status message', 90_000);
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    fake.setAnswerDelay('chat.postMessage', 0);
    expect(await a.store.slackMessageState(s.id)).toMatchObject({ ts: undefined });

    // A replica with workers and the bot token takes over the session and its DM.
    await replica({ workers: true });
    const ready = await until(
      () => {
        const m = fake.messagesTo(user)[0];
        return m && /your cluster is ready/.test(m.text ?? '') ? m : undefined;
      },
      'the DM to show the active session after the crash',
      90_000,
    );
    await a.service.stop(s.id);
    await until(
      () => fake.messagesTo(user).some((m) => /has ended/.test(m.text ?? '')),
      'the last DM',
    );
    await new Promise((r) => setTimeout(r, 500)); // nothing more arrives late
    // Exactly one status message (the one B posted, adopted), and the goodbye.
    expect(fake.messagesTo(user).map((m) => m.ts)).toEqual([ready.ts, expect.any(String)]);
    expect(shownText(fake.message(ready.channel, ready.ts)!)).toMatch(/Stopped/);
    const history = fake.calls
      .slice(callsBefore)
      .filter((c) => c.method === 'conversations.history');
    expect(history.length).toBeGreaterThanOrEqual(1);
    expect(history.every((c) => c.args.include_all_metadata === 'true')).toBe(true);
  }, 300_000);
});

function redisConnection(url: string) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
}
