import { createServer, request as httpRequest, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sessionProgress } from '../../src/api/index.js';
import type { SessionView } from '../../src/sessions/types.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { runCli } from './fixtures/run-cli.js';

const ONE = 'v1.30-1node';

interface Seen {
  method: string;
  path: string;
  after?: string;
  waitSeconds?: number;
  status: number;
  ms: number;
  progress?: string;
}

/**
 * Stands between the CLI and the API on loopback and records every request
 * that reaches the API, with how long it was held and what it answered.
 */
async function countingProxy(
  target: string,
): Promise<{ url: string; seen: Seen[]; server: Server }> {
  const to = new URL(target);
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const started = Date.now();
    const upstream = httpRequest(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          const url = new URL(req.url ?? '/', 'http://proxy');
          let progress: string | undefined;
          try {
            const parsed = JSON.parse(body.toString()) as SessionView;
            if (parsed.state) progress = sessionProgress(parsed);
          } catch {
            /* not a session */
          }
          const wait = url.searchParams.get('waitSeconds');
          seen.push({
            method: req.method ?? '',
            path: url.pathname,
            after: url.searchParams.get('after') ?? undefined,
            waitSeconds: wait === null ? undefined : Number(wait),
            status: answer.statusCode ?? 0,
            ms: Date.now() - started,
            progress,
          });
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(body);
        });
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, seen, server };
}

describe('labvirt start follows the session without polling', () => {
  let stack: TestStack;
  let proxy: Awaited<ReturnType<typeof countingProxy>>;
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-start-wait-'));

  beforeAll(async () => {
    // One env in all: the second student waits in line for the first one's.
    stack = await startTestStack({
      overrides: {
        flavors: { [ONE]: { minWarm: 1, maxTotal: 1 }, 'v1.30-3node': { minWarm: 0 } },
      },
    });
    await stack.fillPool(ONE, 1, { timeoutMs: 90_000 });
    proxy = await countingProxy(stack.labvirt.apiUrl!);
  }, 120_000);
  afterAll(async () => {
    await new Promise((r) => proxy?.server.close(r));
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows "in line #1", then preparing, then active, with one request per change', async () => {
    const { service } = stack.labvirt;
    const first = await service.start({ student: 'first', labId: 'fixture-one' });
    await stack.untilSession(first.id, 'active', 60_000);

    const started = Date.now();
    const cli = runCli(
      ['start', '--lab', 'fixture-one', '--student', 'second', '--key-file', join(dir, 'k')],
      { LABVIRT_API_URL: proxy.url, LABVIRT_API_TOKEN: stack.apiToken, LABVIRT_CONFIG: undefined },
    );
    const waiting = await stack.until(
      async () => (await service.list({ student: 'second' })).find((s) => s.state === 'waiting'),
      'the second student in line',
    );
    expect(waiting.queue?.position).toBe(1);
    // The first student leaves: their env goes, a new one is made and served to the line.
    await service.stop(first.id);
    await stack.until(
      async () => {
        await stack.labvirt.runMaintenance('replenish');
        return (await service.status(waiting.id)).state !== 'waiting';
      },
      'the line to be served',
      90_000,
    );
    const r = await cli;
    const elapsed = Date.now() - started;

    expect(r.code).toBe(0);
    expect(r.stderr).toContain('waiting for an environment: in line #1');
    expect(r.stderr).toContain('preparing your environment');
    expect(r.stdout).toContain('state:    active');
    expect(r.stderr.indexOf('in line #1')).toBeLessThan(r.stderr.indexOf('preparing'));

    const reads = proxy.seen.filter(
      (s) => s.method === 'GET' && s.path === `/v1/sessions/${waiting.id}`,
    );
    expect(reads.length).toBeGreaterThan(0);
    for (const read of reads) {
      expect(read.status).toBe(200);
      expect(read.after).toBeDefined();
      // Every answer is a change, or a wait held to its end: never an early "nothing new".
      if (read.progress === read.after)
        expect(read.ms).toBeGreaterThanOrEqual(read.waitSeconds! * 1000 - 50);
    }
    // One request per change of progress, plus one per 25 s held without one.
    const changes = new Set(reads.map((s) => s.progress)).size;
    expect(reads.length).toBeLessThanOrEqual(changes + Math.ceil(elapsed / 25_000));
    expect(reads.at(-1)?.progress).toBe('active');
    await service.stop(waiting.id);
  }, 180_000);
});
