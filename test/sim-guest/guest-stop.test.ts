import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { GuestFarm, connectClient, guestProcesses, newKey, run } from './fixtures.js';

const farm = new GuestFarm();
afterEach(() => farm.stopAll());

/**
 * A stopped guest writes nothing more in its files: the simulator's stop()
 * returns after its guests', and a test then removes their directories (one
 * met ENOTEMPTY from a guest process still writing).
 */
describe('a guest’s stop()', () => {
  it('returns once every process in the guest is gone', async () => {
    const key = newKey();
    const g = await farm.start({ student: [key.public] });
    expect(g.guest.sandboxed).toBe(true);
    const c = await connectClient({
      port: g.guest.port,
      username: 'student',
      privateKey: key.private,
    });
    // A process of the student's own, left running, writing all the time.
    const started = await run(
      c,
      "nohup sh -c 'while :; do date >> /tmp/busy; done' >/dev/null 2>&1 & sleep 0.2; test -s /tmp/busy && echo writing",
    );
    expect(started.stdout).toBe('writing\n');
    c.end();
    await g.guest.stop();
    expect(guestProcesses(g.sandbox)).toEqual({ all: 0, helpers: 0 });
    await rm(g.sandbox, { recursive: true });
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(g.sandbox)).toBe(false);
  });
});
