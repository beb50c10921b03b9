import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { formatProblems, loadLab } from '../../src/labs/index.js';

/** Lab files that are not what a lab author writes: refused, never read out. */
const flavors = [...Object.keys(loadConfig({ env: {} }).flavors), 'v1.30-1node'];
const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'labs', 'fixture-one');
const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A copy of a good lab, in a folder named like its id. */
function lab(): string {
  const root = mkdtempSync(join(tmpdir(), 'labvirt-labfiles-'));
  made.push(root);
  const dir = join(root, 'fixture-one');
  cpSync(FIXTURE, dir, { recursive: true });
  return dir;
}

async function problemsOf(dir: string): Promise<string> {
  const result = await loadLab(dir, { flavors });
  expect(result.lab).toBeUndefined();
  return formatProblems(result.problems);
}

describe('lab files', () => {
  it('the untouched copy loads (the attacks below are what fails)', async () => {
    expect((await loadLab(lab(), { flavors })).problems).toEqual([]);
  });

  it('refuses a lab.yaml symlinked outside the folder, without printing what it points to', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'labvirt-secret-'));
    made.push(outside);
    const secret = join(outside, 'shadow');
    writeFileSync(
      secret,
      'root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\nstudent:$6$x$y:1:::\n',
    );
    const dir = lab();
    rmSync(join(dir, 'lab.yaml'));
    symlinkSync(secret, join(dir, 'lab.yaml'));
    const text = await problemsOf(dir);
    expect(text).toMatch(/resolves to a path outside the lab folder/);
    expect(text).not.toMatch(/root|hashhash|student:|\$6\$/);
  });

  it('refuses a script symlinked outside the folder', async () => {
    const dir = lab();
    rmSync(join(dir, 'setup.sh'));
    symlinkSync('/etc/passwd', join(dir, 'setup.sh'));
    const text = await problemsOf(dir);
    expect(text).toMatch(
      /script `fixture-one\/setup.sh` resolves to a path outside the lab folder/,
    );
    expect(text).not.toMatch(/root:/);
  });

  it('refuses a FIFO as lab.yaml or script at once instead of hanging', async () => {
    const dir = lab();
    rmSync(join(dir, 'check.sh'));
    execFileSync('mkfifo', [join(dir, 'check.sh')]);
    const started = Date.now();
    expect(await problemsOf(dir)).toMatch(/`fixture-one\/check.sh` is not a regular file/);
    rmSync(join(dir, 'lab.yaml'));
    execFileSync('mkfifo', [join(dir, 'lab.yaml')]);
    expect(await problemsOf(dir)).toMatch(/lab.yaml` is not a regular file/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('refuses a script over the size cap, and one that is not UTF-8', async () => {
    const dir = lab();
    writeFileSync(join(dir, 'setup.sh'), '#!/bin/bash\n' + '#'.repeat(50 * 1024 * 1024), {
      mode: 0o755,
    });
    expect(await problemsOf(dir)).toMatch(/`fixture-one\/setup.sh` is larger than 256 KiB/);
    const dir2 = lab();
    writeFileSync(
      join(dir2, 'check.sh'),
      Buffer.concat([
        Buffer.from('#!/bin/bash\necho "'),
        Buffer.from([0xff, 0xfe, 0xc3]),
        Buffer.from('"\n'),
      ]),
      { mode: 0o755 },
    );
    expect(await problemsOf(dir2)).toMatch(/`fixture-one\/check.sh` is not valid UTF-8 text/);
  });

  it('quotes at most a short excerpt of a bad value or unknown field', async () => {
    const dir = lab();
    const longKey = 'k'.repeat(1000);
    const longValue = 'v'.repeat(5000);
    writeFileSync(
      join(dir, 'lab.yaml'),
      (await import('node:fs'))
        .readFileSync(join(FIXTURE, 'lab.yaml'), 'utf8')
        .replace('difficulty: easy', `difficulty: ${longValue}\n${longKey}: 1`),
    );
    const text = await problemsOf(dir);
    expect(text).toMatch(/unknown field `k{40}…`/);
    expect(text).toMatch(/v{39}…/);
    expect(text).not.toMatch(/k{41}|v{41}/);
  });
});
