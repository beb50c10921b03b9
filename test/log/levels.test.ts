import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { createLogger, moduleLogger } from '../../src/log/index.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, destination };
}

describe('log levels per module', () => {
  it('a module logs at its own level from logLevels, the others at logLevel, each line naming its module', async () => {
    const config = loadConfig({
      env: {},
      overrides: { logLevel: 'warn', logLevels: { gateway: 'debug' } },
    });
    const { lines, destination } = capture();
    const root = createLogger({ level: config.logLevel, destination });
    const gateway = moduleLogger(root, 'gateway', config.logLevels);
    const api = moduleLogger(root, 'api', config.logLevels);
    gateway.debug({ session: 's-1' }, 'gateway detail');
    api.info('api chatter');
    api.warn('api warning');
    root.info('root chatter');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.component, l.msg])).toEqual([
      ['gateway', 'gateway detail'],
      ['api', 'api warning'],
    ]);
    expect(lines[0]).toMatchObject({ session: 's-1', level: 20 });
  });

  it('refuses an unknown module or level, naming it', () => {
    expect(() => loadConfig({ env: {}, overrides: { logLevels: { gatway: 'debug' } } })).toThrow(
      ConfigError,
    );
    const message = (() => {
      try {
        loadConfig({ env: {}, overrides: { logLevels: { gatway: 'debug', api: 'loud' } } });
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(message).toMatch(/logLevels/);
    expect(message).toMatch(/gatway/);
    expect(message).toMatch(/loud/);
  });
});
