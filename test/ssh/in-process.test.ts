import { describe, expect, it } from 'vitest';
import { duplexPair } from '../../src/ssh/in-process.js';

describe('duplexPair', () => {
  it('carries bytes both ways, in order, and ends the reader when the writer ends', async () => {
    const [a, b] = duplexPair();
    const got: string[] = [];
    b.on('data', (d: Buffer) => got.push(d.toString()));
    const ended = new Promise<void>((r) => b.once('end', () => r()));
    a.write('one ');
    a.end('two');
    await ended;
    expect(got.join('')).toBe('one two');
    b.end('back');
    const back: Buffer[] = [];
    for await (const chunk of a) back.push(chunk as Buffer);
    expect(Buffer.concat(back).toString()).toBe('back');
  });

  it('holds a writer back while the reader does not read, and loses nothing', async () => {
    const [a, b] = duplexPair();
    const chunk = Buffer.alloc(64 * 1024, 7);
    let writes = 0;
    while (a.write(chunk)) writes++;
    // The reader's buffer is full: the writer was told to wait.
    expect(writes).toBeLessThan(10);
    let total = 0;
    b.on('data', (d: Buffer) => (total += d.length));
    await new Promise<void>((r) => a.once('drain', () => r()));
    a.end();
    await new Promise<void>((r) => b.once('end', () => r()));
    expect(total).toBe((writes + 1) * chunk.length);
  });

  it('destroys both sides when one is destroyed', async () => {
    const [a, b] = duplexPair();
    const closed = new Promise<void>((r) => b.once('close', () => r()));
    a.destroy();
    await closed;
    expect(b.destroyed).toBe(true);
  });
});
