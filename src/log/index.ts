import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Paths whose values are replaced before a log line is written. Secrets must
 * never reach a log: tokens, keys, passwords and Slack signing material.
 */
export const REDACTED_PATHS = [
  '*.token',
  '*.password',
  '*.privateKey',
  '*.private_key',
  '*.secret',
  '*.signingSecret',
  '*.authorization',
  '*.headers.authorization',
  '*.headers["x-slack-signature"]',
  'token',
  'password',
  'privateKey',
  'secret',
  'authorization',
];

export interface CreateLoggerOptions {
  level?: LoggerOptions['level'];
  name?: string;
  /** Where lines go; stdout when absent. */
  destination?: NodeJS.WritableStream;
}

/** The one structured logger factory of labvirt: JSON lines, secrets redacted. */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? process.env.LABVIRT_LOG_LEVEL ?? 'info',
    name: options.name ?? 'labvirt',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * The logger of one labvirt module: lines carry `component: <module>`, at the
 * module's own level when the configuration gives one (`logLevels`).
 */
export function moduleLogger(
  root: Logger,
  module: string,
  levels: Partial<Record<string, string>> = {},
): Logger {
  const level = levels[module];
  return level ? root.child({ component: module }, { level }) : root.child({ component: module });
}
