import { describe, expect, it } from 'vitest';
import { OutageLog } from '../../src/log/outage.js';
import { capturingLogger } from '../helpers/log-lines.js';

const settle = () => new Promise((r) => setImmediate(r));

function outageLog(options: { steadyMs?: number; quietEndsMs?: number } = {}) {
  const { logger, lines } = capturingLogger('debug');
  let t = 1_000_000;
  const log = new OutageLog(logger, {
    lost: 'gone',
    again: 'still gone',
    back: 'back',
    ...options,
    now: () => t,
  });
  return {
    log,
    lines,
    advance: (ms: number) => (t += ms),
    seen: async () => {
      await settle();
      return lines.map((l) => [l.level, l.msg]);
    },
  };
}

describe('OutageLog: one warning an outage', () => {
  it('warns at the first failure, writes the rest at debug level, and says how long it lasted', async () => {
    const o = outageLog();
    o.log.success(); // nothing open: nothing to say
    o.log.failure({ err: 'refused' });
    o.advance(500);
    o.log.failure({ err: 'refused' });
    o.log.failure({ err: 'reset' });
    expect(o.log.open).toBe(true);
    o.advance(2_000);
    o.log.success({ connection: 'a' });
    o.log.success();
    expect(await o.seen()).toEqual([
      [40, 'gone'],
      [20, 'still gone'],
      [20, 'still gone'],
      [30, 'back'],
    ]);
    expect(o.lines[0]!.err).toBe('refused');
    expect(o.lines[3]).toMatchObject({ connection: 'a', outageSeconds: 2.5 });
    expect(o.log.open).toBe(false);
  });

  it('takes a service that answers between failures for one outage', async () => {
    const o = outageLog({ steadyMs: 1_000 });
    for (let i = 0; i < 5; i++) {
      o.log.failure({});
      o.advance(200);
      o.log.success(); // too soon after a failure to say it is back
      o.advance(200);
    }
    o.advance(1_000);
    o.log.success();
    expect(await o.seen()).toEqual([
      [40, 'gone'],
      [20, 'still gone'],
      [20, 'still gone'],
      [20, 'still gone'],
      [20, 'still gone'],
      [30, 'back'],
    ]);
  });

  it('ends an outage nothing reported the end of after a quiet spell; a failure then warns again', async () => {
    const o = outageLog({ quietEndsMs: 60_000 });
    o.log.failure({});
    o.advance(30_000);
    o.log.failure({});
    o.advance(61_000);
    expect(o.log.open).toBe(false);
    o.log.failure({});
    expect(await o.seen()).toEqual([
      [40, 'gone'],
      [20, 'still gone'],
      [40, 'gone'],
    ]);
  });
});
