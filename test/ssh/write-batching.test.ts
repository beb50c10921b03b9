import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchWrites } from '../../src/ssh/write-batching.js';

let server: Server;
const accepted: Socket[] = [];
beforeAll(async () => {
  server = createServer((s) => accepted.push(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
});
afterAll(async () => {
  for (const s of accepted) s.destroy();
  await new Promise((r) => server.close(r));
});

/** A connected loopback pair: [our end, the peer's end]. */
async function pair(): Promise<[Socket, Socket]> {
  const n = accepted.length;
  const ours = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(ours, 'connect');
  while (accepted.length === n) await new Promise((r) => setImmediate(r));
  return [ours, accepted[n]!];
}

function collect(socket: Socket, until: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= until) resolve(Buffer.concat(chunks));
    });
  });
}

describe('batching the writes that one read causes', () => {
  it('holds both legs’ writes during a read and sends them all, in order, right after', async () => {
    const [studentSide, student] = await pair();
    const [guestSide, guest] = await pair();
    // Like ssh2: it pauses, then its own handler relays each read as several packets.
    studentSide.pause();
    guestSide.pause();
    batchWrites(studentSide, guestSide);
    const corkedDuringRead: number[] = [];
    studentSide.on('data', (d: Buffer) => {
      corkedDuringRead.push(guestSide.writableCorked, studentSide.writableCorked);
      for (let i = 0; i < 3; i++) guestSide.write(Buffer.concat([Buffer.from(`${i}:`), d]));
      studentSide.write('ack'); // a window adjustment, say
    });
    studentSide.resume();
    const atGuest = collect(guest, 3 * 7);
    const atStudent = collect(student, 3);
    student.write('hello');
    expect((await atGuest).toString()).toBe('0:hello1:hello2:hello');
    expect((await atStudent).toString()).toBe('ack');
    expect(corkedDuringRead[0]).toBe(1);
    expect(corkedDuringRead[1]).toBe(1);
    // Uncorked once the read was handled: a write from elsewhere goes at once.
    expect(guestSide.writableCorked).toBe(0);
    expect(studentSide.writableCorked).toBe(0);
  });

  it('delivers a single keystroke without waiting for more input', async () => {
    const [studentSide, student] = await pair();
    const [guestSide, guest] = await pair();
    studentSide.pause();
    batchWrites(studentSide, guestSide);
    studentSide.on('data', (d: Buffer) => guestSide.write(d));
    studentSide.resume();
    const echoed = collect(guest, 1);
    student.write('x');
    expect((await echoed).toString()).toBe('x');
  });

  it('leaves a socket that ends during a read usable to the end', async () => {
    const [studentSide, student] = await pair();
    studentSide.pause();
    batchWrites(studentSide);
    studentSide.on('data', () => studentSide.end('bye'));
    studentSide.resume();
    const got = collect(student, 3);
    student.write('quit');
    expect((await got).toString()).toBe('bye');
    await once(student, 'end');
  });
});
