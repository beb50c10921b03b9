import { PassThrough } from 'node:stream';
import { createLogger, type Logger } from '../../src/log/index.js';

/** One of labvirt's JSON log lines, as pino writes it. */
export interface LogLine {
  level: number;
  msg: string;
  component?: string;
  envId?: string;
  sessionId?: string;
  [key: string]: unknown;
}

/** A real labvirt logger whose JSON lines are parsed into `lines` as they are written. */
export function capturingLogger(level = 'debug'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const out = new PassThrough();
  let buffered = '';
  out.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, nl)) as LogLine);
      buffered = buffered.slice(nl + 1);
    }
  });
  return { logger: createLogger({ level, destination: out }), lines };
}

/** Lines at warning level or above. */
export function warningsIn(lines: readonly LogLine[]): LogLine[] {
  return lines.filter((l) => l.level >= 40);
}

/** How many of `lines` say `msg`. */
export function countOf(lines: readonly LogLine[], msg: string): number {
  return lines.filter((l) => l.msg === msg).length;
}
