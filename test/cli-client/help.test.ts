import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';

/** Every command of the program with its full path, groups included. */
function allCommands(cmd: Command, path: string[] = []): [string, Command][] {
  return cmd.commands
    .filter((c) => c.name() !== 'help')
    .flatMap((c) => {
      const here = [...path, c.name()];
      return [[here.join(' '), c] as [string, Command], ...allCommands(c, here)];
    });
}

/** Runs `labvirt <args> --help` in this process and returns what it printed. */
async function help(args: string[]): Promise<{ code: number; out: string }> {
  const program = buildProgram();
  let out = '';
  const capture = (c: Command) => {
    c.exitOverride().configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
    c.commands.forEach(capture);
  };
  capture(program);
  try {
    await program.parseAsync(['node', 'labvirt', ...args, '--help']);
    return { code: 0, out };
  } catch (err) {
    return { code: (err as { exitCode?: number }).exitCode ?? 1, out };
  }
}

const commands = allCommands(buildProgram());

describe('labvirt --help', () => {
  it('lists the commands of the issue', () => {
    const names = commands.map(([p]) => p);
    for (const p of ['config check', 'config show', 'labs validate', 'labs list', 'labs test'])
      expect(names).toContain(p);
    for (const p of ['render', 'serve', 'dev', 'start', 'check', 'pool status'])
      expect(names).toContain(p);
  });

  it.each(commands)('%s --help explains the command and every option', async (path, cmd) => {
    expect(cmd.description().length, `${path} has no description`).toBeGreaterThan(10);
    for (const o of cmd.options)
      expect(o.description.length, `${path} ${o.flags}`).toBeGreaterThan(3);
    const r = await help(path.split(' '));
    expect(r.code).toBe(0);
    expect(r.out).toContain(`Usage: labvirt ${path}`);
    expect(r.out).toContain('-h, --help');
  });

  it('mentions only commands that exist', () => {
    const names = new Set(commands.map(([p]) => p));
    const texts = commands.flatMap(([, c]) => [
      c.description(),
      ...c.options.map((o) => o.description),
    ]);
    for (const text of texts) {
      for (const [, mention] of text.matchAll(/`labvirt ([a-z][a-z -]*?)(?: [-<[]|`)/g)) {
        const [first = '', second = ''] = mention!.trim().split(' ');
        const isGroup = commands.some(([p]) => p.startsWith(`${first} `));
        const named = isGroup ? `${first} ${second}` : first;
        expect(names.has(named), `help mentions \`labvirt ${mention}\`, which does not exist`).toBe(
          true,
        );
      }
    }
  });
});

describe('labvirt --version', () => {
  it('prints the version from package.json', async () => {
    const program = buildProgram();
    let out = '';
    program.exitOverride().configureOutput({ writeOut: (s) => (out += s) });
    await expect(program.parseAsync(['node', 'labvirt', '--version'])).rejects.toMatchObject({
      code: 'commander.version',
    });
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as {
      version: string;
    };
    expect(out.trim()).toBe(pkg.version);
  });
});

describe('bad usage', () => {
  it('exits 2 with the option, the value and what is expected', () => {
    const bin = fileURLToPath(new URL('../../bin/labvirt.js', import.meta.url));
    const r = spawnSync(process.execPath, [bin, 'sim', '--speed', 'fast'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`option '--speed <factor>' argument 'fast' is invalid`);
    expect(r.stderr).toContain('expected a number from 0.01 to 100000');
  });
});
