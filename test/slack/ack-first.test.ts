import { describe, expect, it } from 'vitest';
import { AckFirst } from '../../src/slack/ack-first.js';

/** Settles `p` into a flag that can be read without waiting. */
function track(p: Promise<void>) {
  const state = { done: false };
  void p.then(() => (state.done = true));
  return state;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('acknowledgements first', () => {
  it('lets work go at once when no request waits for its acknowledgement', async () => {
    const gate = new AckFirst(20, 5_000);
    const work = track(gate.quiet());
    await sleep(0);
    expect(work.done).toBe(true);
  });

  it('holds work until every waiting request is answered and none arrived for a moment', async () => {
    const gate = new AckFirst(30, 10_000);
    const answers = [gate.arrived(), gate.arrived(), gate.arrived()];
    const work = track(gate.quiet());
    answers[0]!();
    answers[1]!();
    await sleep(60);
    expect(work.done).toBe(false);
    // The last one answered, but a new request arrives within the settle time.
    answers[2]!();
    const late = gate.arrived();
    await sleep(60);
    expect(work.done).toBe(false);
    late();
    await sleep(60);
    expect(work.done).toBe(true);
  });

  it('counts a request answered twice (finish, then close) once', async () => {
    const gate = new AckFirst(20, 10_000);
    const first = gate.arrived();
    first();
    first();
    const second = gate.arrived();
    const work = track(gate.quiet());
    await sleep(60);
    expect(work.done).toBe(false);
    second();
    await sleep(60);
    expect(work.done).toBe(true);
  });

  it('holds no work longer than its limit, however many requests keep arriving', async () => {
    const gate = new AckFirst(20, 150);
    const stuck = gate.arrived();
    const work = track(gate.quiet());
    await sleep(50);
    expect(work.done).toBe(false);
    await sleep(250);
    expect(work.done).toBe(true);
    stuck();
  });
});
