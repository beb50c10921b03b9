import { tmpdir } from 'node:os';
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { describe, expect, it, vi } from 'vitest';
import { captureProcessState, leftoversBetween, restoreGlobals } from './leftovers-check.js';

// The check every test file passes through (test/helpers/leftovers.ts): each
// case makes one kind of leftover, asks what was left, and puts it back.
describe('the shared-worker leftovers check', () => {
  it('finds nothing when a file put everything back', () => {
    const before = captureProcessState();
    process.env.LABVIRT_LEFTOVER_PROBE = 'x';
    delete process.env.LABVIRT_LEFTOVER_PROBE;
    expect(leftoversBetween(before, captureProcessState())).toEqual([]);
  });

  it('names environment variables set, changed or removed, never their values', () => {
    process.env.LABVIRT_LEFTOVER_CHANGED = 'old';
    process.env.LABVIRT_LEFTOVER_REMOVED = 'here';
    const before = captureProcessState();
    process.env.LABVIRT_LEFTOVER_SET = 'secret-value';
    process.env.LABVIRT_LEFTOVER_CHANGED = 'new';
    delete process.env.LABVIRT_LEFTOVER_REMOVED;
    const problems = leftoversBetween(before, captureProcessState());
    delete process.env.LABVIRT_LEFTOVER_SET;
    delete process.env.LABVIRT_LEFTOVER_CHANGED;
    expect(problems).toEqual([
      'environment variable LABVIRT_LEFTOVER_CHANGED was changed',
      'environment variable LABVIRT_LEFTOVER_REMOVED was removed',
      'environment variable LABVIRT_LEFTOVER_SET was set',
    ]);
    expect(problems.join()).not.toContain('secret-value');
  });

  it('names a spy left on', () => {
    const before = captureProcessState();
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const problems = leftoversBetween(before, captureProcessState());
    vi.restoreAllMocks();
    expect(problems).toEqual(['console.warn replaced (a spy or stub not restored?)']);
  });

  it('names a changed working directory, exit code and signal handlers', () => {
    const before = captureProcessState();
    const cwd = process.cwd();
    const onSigint = () => undefined;
    process.chdir(tmpdir());
    process.exitCode = 3;
    process.on('SIGINT', onSigint);
    const problems = leftoversBetween(before, captureProcessState());
    process.chdir(cwd);
    process.exitCode = before.exitCode;
    process.off('SIGINT', onSigint);
    expect(problems).toEqual([
      `working directory changed to ${process.platform === 'linux' ? tmpdir() : process.cwd()}`,
      'process.exitCode left at 3',
      "1 process 'SIGINT' listener(s) left",
    ]);
  });

  it('names a replaced console method and global dispatcher, and puts both back', () => {
    // Made on first use: made here first, so the check sees it replaced.
    const dispatcher = getGlobalDispatcher();
    const before = captureProcessState();
    const consoleError = console.error;
    console.error = () => undefined;
    const agent = new Agent();
    setGlobalDispatcher(agent);
    expect(leftoversBetween(before, captureProcessState())).toEqual([
      'console.error replaced (a spy or stub not restored?)',
      "undici's global dispatcher replaced (a spy or stub not restored?)",
    ]);
    restoreGlobals(before.globals);
    expect(console.error).toBe(consoleError);
    expect(getGlobalDispatcher()).toBe(dispatcher);
    expect(leftoversBetween(before, captureProcessState())).toEqual([]);
    // Recorded before it existed: put back means left as it is, never taken away.
    restoreGlobals({ ...before.globals, "undici's global dispatcher": undefined });
    expect(getGlobalDispatcher()).toBe(dispatcher);
    void agent.close();
  });
});
