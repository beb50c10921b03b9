import { Duplex } from 'node:stream';

/**
 * Two connected in-memory streams: what one writes, the other reads, with
 * backpressure (a write completes once the other side takes it). Ending one
 * ends the other's reading; destroying one destroys both. Hands a jump of an
 * in-process session (the web terminal bridge) a stream whose every byte the
 * gateway sees. (Node 22's stream.duplexPair, on 20.)
 */
export function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const waiting: ((() => void) | undefined)[] = [undefined, undefined];
  const make = (me: 0 | 1): Duplex => {
    const other = (1 - me) as 0 | 1;
    return new Duplex({
      write(chunk: Buffer, _encoding, callback) {
        if (sides[other]!.push(chunk)) callback();
        else waiting[me] = callback;
      },
      final(callback) {
        sides[other]!.push(null);
        callback();
      },
      read() {
        const resume = waiting[other];
        waiting[other] = undefined;
        resume?.();
      },
      destroy(err, callback) {
        if (!sides[other]!.destroyed) sides[other]!.destroy();
        callback(err);
      },
    });
  };
  sides.push(make(0), make(1));
  return [sides[0]!, sides[1]!];
}
