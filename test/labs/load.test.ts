import { chmodSync, cpSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import {
  formatProblems,
  loadLab,
  loadLabs,
  shownPath,
  type LabProblem,
} from '../../src/labs/index.js';
import { FIXTURES, SHIPPED_LABS } from './helpers.js';

const flavors = Object.keys(loadConfig({ env: {} }).flavors);
/**
 * A copy of fixtures/broken: the YAML syntax error is stored as lab.yaml.in so
 * prettier can format the repository, and becomes lab.yaml here.
 */
const BROKEN = join(mkdtempSync(join(tmpdir(), 'labvirt-broken-')), 'broken');
/** A fixture's path as problems show it (from the current directory). */
const broken = (path: string) => shownPath(join(BROKEN, path));
beforeAll(() => {
  cpSync(join(FIXTURES, 'broken'), BROKEN, { recursive: true });
  renameSync(join(BROKEN, 'yaml-syntax', 'lab.yaml.in'), join(BROKEN, 'yaml-syntax', 'lab.yaml'));
  chmodSync(join(BROKEN, 'not-executable', 'setup.sh'), 0o644);
});

describe('shipped labs', () => {
  it('load with zero problems against the default flavors', async () => {
    const { labs, problems } = await loadLabs(SHIPPED_LABS, { flavors });
    expect(formatProblems(problems)).toBe('');
    expect(labs.length).toBeGreaterThanOrEqual(8);
    for (const lab of labs) {
      expect(flavors).toContain(lab.flavor);
      expect(lab.hints.length, `${lab.id}: hints should be progressive`).toBeGreaterThanOrEqual(3);
      expect(lab.solve.length, `${lab.id}: needs a solve`).toBeGreaterThan(0);
      expect(lab.sim?.setup.length, `${lab.id}: needs sim setup`).toBeGreaterThan(0);
      expect(lab.sim?.solve.length, `${lab.id}: needs sim solve`).toBeGreaterThan(0);
      expect(
        lab.sim?.checks.map((c) => c.name),
        `${lab.id}: sim checks mirror the real ones`,
      ).toEqual(lab.checks.map((c) => c.name));
      for (const check of [...lab.checks, ...(lab.sim?.checks ?? [])]) {
        expect(check.content, `${check.file} prints FAIL: lines`).toMatch(/echo "FAIL: /);
      }
    }
  });

  it('carry script contents, resolved flavors and points', async () => {
    const { labs } = await loadLabs(SHIPPED_LABS, { flavors });
    const lab = labs.find((l) => l.id === 'kubelet-down-worker');
    expect(lab).toMatchObject({
      flavor: 'v1.30-3node',
      nodes: 3,
      kubernetes: '1.30',
      totalPoints: 3,
    });
    expect(lab?.setup[0]).toMatchObject({
      file: 'kubelet-down-worker/setup.sh',
      node: 'worker-1',
      user: 'root',
      timeoutSeconds: 120,
    });
    expect(lab?.setup[0]?.content.startsWith('#!/bin/bash\n')).toBe(true);
    expect(lab?.checks.map((c) => [c.name, c.points])).toEqual([
      ['node-ready', 2],
      ['kubelet-enabled', 1],
    ]);
    const kubeconfig = labs.find((l) => l.id === 'kubeconfig-broken');
    expect(kubeconfig?.checks[1]?.user).toBe('student');
  });

  it('cover both default flavors and several difficulties', async () => {
    const { labs } = await loadLabs(SHIPPED_LABS, { flavors });
    expect(new Set(labs.map((l) => l.flavor))).toEqual(new Set(flavors));
    expect(new Set(labs.map((l) => l.difficulty))).toEqual(new Set(['easy', 'medium', 'hard']));
  });

  it('are refused when the configuration lacks their flavor', async () => {
    const { labs, problems } = await loadLabs(SHIPPED_LABS, { flavors: ['v1.31-1node'] });
    expect(labs.every((l) => l.flavor === 'v1.31-1node')).toBe(true);
    const unknown = problems.filter((p) => p.field === 'flavor');
    expect(unknown.length).toBeGreaterThan(0);
    expect(unknown[0]?.message).toContain('unknown flavor `v1.30-3node`');
  });
});

describe('broken labs', () => {
  const cases: [string, Partial<LabProblem>[]][] = [
    [
      'yaml-syntax',
      [
        {
          file: broken('yaml-syntax/lab.yaml'),
          field: '',
          message: expect.stringMatching(/^YAML syntax error at line 7, column 1: /) as string,
        },
      ],
    ],
    [
      'unknown-key',
      [
        {
          file: broken('unknown-key/lab.yaml'),
          field: 'timelimitMinutes',
          message: 'unknown field `timelimitMinutes`',
          suggestion: 'did you mean `timeLimitMinutes`?',
        },
      ],
    ],
    [
      'missing-field',
      [
        {
          file: broken('missing-field/lab.yaml'),
          field: 'title',
          message: 'missing required field `title`',
          suggestion: expect.stringContaining('add `title`') as string,
        },
      ],
    ],
    [
      'wrong-type',
      [
        {
          file: broken('wrong-type/lab.yaml'),
          field: 'checks.0.points',
          message: '`points` must be a number, got a string ("two")',
        },
      ],
    ],
    [
      'id-mismatch',
      [
        {
          file: broken('id-mismatch/lab.yaml'),
          field: 'id',
          message: 'id `other-name` does not match the folder name `id-mismatch`',
          suggestion: 'set id: id-mismatch or rename the folder to other-name',
        },
      ],
    ],
    [
      'missing-script',
      [
        {
          file: broken('missing-script/lab.yaml'),
          field: 'setup.0.script',
          message: 'script file `missing-script/prepare-cluster.sh` does not exist',
        },
      ],
    ],
    [
      'not-executable',
      [
        {
          file: broken('not-executable/setup.sh'),
          field: 'setup.0.script',
          suggestion: `run: chmod +x ${broken('not-executable/setup.sh')}`,
        },
      ],
    ],
    [
      'no-shebang',
      [
        {
          file: broken('no-shebang/setup.sh'),
          field: 'setup.0.script',
          message: 'script `no-shebang/setup.sh` does not start with a bash shebang',
          suggestion: expect.stringContaining('#!/bin/bash') as string,
        },
      ],
    ],
    [
      'unknown-flavor',
      [
        {
          file: broken('unknown-flavor/lab.yaml'),
          field: 'flavor',
          message: expect.stringContaining('unknown flavor `v1.29-3node`') as string,
          suggestion: expect.stringContaining('v1.30-3node, v1.31-1node') as string,
        },
      ],
    ],
    [
      'unquoted-version',
      [
        {
          file: broken('unquoted-version/lab.yaml'),
          field: 'flavor.kubernetes',
          suggestion: 'quote it: kubernetes: "1.30"',
        },
      ],
    ],
    [
      'bad-time-limit',
      [
        {
          file: broken('bad-time-limit/lab.yaml'),
          field: 'timeLimitMinutes',
          message: '`timeLimitMinutes` is 600, must be at most 480',
        },
      ],
    ],
    [
      'empty-hints',
      [{ file: broken('empty-hints/lab.yaml'), field: 'hints', message: '`hints` is empty' }],
    ],
    [
      'worker-on-one-node',
      [
        {
          file: broken('worker-on-one-node/lab.yaml'),
          field: 'setup.0.node',
          message: expect.stringContaining('does not exist in a 1-node flavor') as string,
        },
      ],
    ],
    [
      'zero-points',
      [
        {
          file: broken('zero-points/lab.yaml'),
          field: 'checks.0.points',
          message: '`points` is 0, must be at least 1',
        },
      ],
    ],
    [
      'bad-node',
      [
        {
          file: broken('bad-node/lab.yaml'),
          field: 'setup.0.node',
          suggestion: expect.stringContaining('did you mean `worker-1`?') as string,
        },
      ],
    ],
    [
      'script-outside',
      [
        {
          file: broken('script-outside/lab.yaml'),
          field: 'setup.0.script',
          message: 'script `../shared/setup.sh` is outside the lab folder',
        },
      ],
    ],
    [
      'sim-incomplete',
      [
        {
          file: broken('sim-incomplete/lab.yaml'),
          field: 'sim.checks',
          message: 'missing required field `checks`',
        },
      ],
    ],
    [
      'sim-mismatch',
      [
        {
          file: broken('sim-mismatch/lab.yaml'),
          field: 'sim.checks.0.points',
          message: 'sim check `fixed` is worth 1 points, the real one 2',
          suggestion: 'give it points: 2',
        },
        {
          file: broken('sim-mismatch/lab.yaml'),
          field: 'sim.checks.1.name',
          message: 'sim check `fixd` has no real check of that name',
        },
        {
          file: broken('sim-mismatch/lab.yaml'),
          field: 'sim.checks',
          message: 'the real check `still-fixed` has no sim variant',
        },
      ],
    ],
    [
      'duplicate-check',
      [
        {
          file: broken('duplicate-check/lab.yaml'),
          field: 'checks.1.name',
          message: 'duplicate check name `fixed`',
        },
      ],
    ],
    [
      'no-lab-yaml',
      [
        {
          file: broken('no-lab-yaml/lab.yaml'),
          field: '',
          message: 'the lab folder has no lab.yaml',
        },
      ],
    ],
  ];

  it.each(cases)('%s: reports exactly the expected problem', async (name, expected) => {
    const { lab, problems } = await loadLab(join(BROKEN, name), { flavors });
    expect(lab).toBeUndefined();
    expect(problems).toEqual(expected.map((p) => expect.objectContaining(p) as unknown));
    for (const p of problems) expect(p.suggestion.length).toBeGreaterThan(5);
  });

  it('loadLabs reports every broken folder and loads none of them', async () => {
    const { labs, problems } = await loadLabs(BROKEN, { flavors });
    expect(labs).toEqual([]);
    expect(new Set(problems.map((p) => relative(BROKEN, p.file).split('/')[0]))).toEqual(
      new Set(cases.map(([n]) => n)),
    );
  });

  it('catches duplicate ids across folders', async () => {
    const { labs, problems } = await loadLabs(join(FIXTURES, 'duplicates'), { flavors });
    expect(labs.map((l) => l.id)).toEqual(['alpha']);
    expect(problems).toContainEqual({
      file: shownPath(join(FIXTURES, 'duplicates', 'beta/lab.yaml')),
      field: 'id',
      message: `duplicate lab id \`alpha\`, already used by ${shownPath(join(FIXTURES, 'duplicates', 'alpha/lab.yaml'))}`,
      suggestion: 'give each lab a unique id equal to its folder name ("beta")',
    });
  });

  it('validates one lab when given its own folder (its sub-folders are not labs)', async () => {
    const one = await loadLabs(join(SHIPPED_LABS, 'coredns-broken'), { flavors });
    expect(one.problems).toEqual([]);
    expect(one.labs.map((l) => l.id)).toEqual(['coredns-broken']);
    const bad = await loadLabs(join(BROKEN, 'bad-time-limit'), { flavors });
    expect(bad.labs).toEqual([]);
    expect(bad.problems).toEqual([
      expect.objectContaining({
        file: broken('bad-time-limit/lab.yaml'),
        field: 'timeLimitMinutes',
      }),
    ]);
  });

  it('refuses time limits longer than sessions may last, when told the limit', async () => {
    const { labs, problems } = await loadLabs(SHIPPED_LABS, { flavors, maxSessionMinutes: 30 });
    expect(problems.map((p) => relative(SHIPPED_LABS, p.file)).sort()).toEqual([
      'containerd-socket/lab.yaml',
      'etcd-restore/lab.yaml',
      'netpol-blocking/lab.yaml',
    ]);
    expect(problems[0]).toMatchObject({
      field: 'timeLimitMinutes',
      suggestion: 'use at most 30 minutes, or raise sessions.maxMinutes in the configuration',
    });
    expect(labs).toHaveLength(6);
  });

  it('reports a labs folder that does not exist', async () => {
    const { labs, problems } = await loadLabs('/nonexistent/labs', { flavors });
    expect(labs).toEqual([]);
    expect(problems[0]?.message).toContain('cannot read the labs folder (ENOENT)');
  });

  it('formats problems with their fix', () => {
    const text = formatProblems([
      {
        file: 'a/lab.yaml',
        field: 'hints',
        message: '`hints` is empty',
        suggestion: 'give a hint',
      },
    ]);
    expect(text).toBe('a/lab.yaml (hints): `hints` is empty\n    fix: give a hint');
  });

  it('reads scripts at load time, so later edits do not change a loaded lab', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-labs-'));
    cpSync(join(FIXTURES, 'duplicates', 'alpha'), join(dir, 'alpha'), { recursive: true });
    const { lab } = await loadLab(join(dir, 'alpha'), { flavors });
    writeFileSync(join(dir, 'alpha', 'setup.sh'), '#!/bin/bash\necho changed\n');
    expect(lab?.setup[0]?.content).toContain('echo setup');
  });
});
