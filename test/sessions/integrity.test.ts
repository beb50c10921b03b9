import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envNamespace } from '../../src/kube/index.js';
import { envNodes } from '../../src/pool/nodes.js';
import type { CheckResult } from '../../src/sessions/types.js';
import { FIXTURE_LABS, startTestStack, type TestStack } from '../helpers/stack.js';

const ONE = 'v1.30-1node';

/**
 * What the tool-swap lab's setup puts first on PATH: a `cat` of its own
 * (one that logs and then runs the real one), as a lab may legitimately do.
 */
const LAB_CAT = `#!/usr/bin/sh
echo "cat $*" >> /var/tmp/lab-cat.log
exec /usr/bin/cat "$@"
`;

/** fixture-one whose setup also replaces a checked tool (the sim's `cat`, first on PATH). */
function writeToolSwapLab(labsDir: string): void {
  const dir = join(labsDir, 'tool-swap');
  cpSync(join(FIXTURE_LABS, 'fixture-one'), dir, { recursive: true });
  writeFileSync(
    join(dir, 'lab.yaml'),
    `id: tool-swap
title: Tool swap
description: fixture-one whose setup replaces cat with a logging one.
difficulty: easy
flavor: { kubernetes: '1.30', nodes: 1 }
timeLimitMinutes: 30
hints: [Look at /etc/fixture/state.]
setup:
  - { node: control-plane, script: setup.sh, timeoutSeconds: 60 }
  - { node: control-plane, script: swap-cat.sh, timeoutSeconds: 60 }
checks:
  - { name: fixed, description: The state file says OK, points: 1, node: control-plane, script: check.sh, timeoutSeconds: 30 }
solve:
  - { node: control-plane, script: solve.sh, timeoutSeconds: 30 }
`,
  );
  // The sim's tool directory is read-only, its parent the guest's own (see
  // the fake-cat attack below): the lab swaps it for links plus its cat.
  writeFileSync(
    join(dir, 'swap-cat.sh'),
    `#!/bin/bash
set -euo pipefail
if [ ! -d /opt.orig ]; then
  mv /opt /opt.orig
  mkdir -p /opt/labvirt-sim/bin
  for f in /opt.orig/labvirt-sim/bin/*; do ln -s "$f" "/opt/labvirt-sim/bin/\${f##*/}"; done
fi
rm -f /opt/labvirt-sim/bin/cat
cat > /opt/labvirt-sim/bin/cat <<'EOF'
${LAB_CAT}EOF
chmod 755 /opt/labvirt-sim/bin/cat
`,
    { mode: 0o755 },
  );
}

/**
 * A student with root in their VM (sudo) tries to fake a pass by changing the
 * tools a check relies on. Each attack is first shown to work on the bare
 * command runner (the lab's own check script exits 0 on an unsolved env), then
 * `check` must refuse to grade and say why.
 */
describe('grading integrity: a student who changes the lab tools cannot fake a pass', () => {
  let stack: TestStack;
  const labsDir = mkdtempSync(join(tmpdir(), 'labvirt-integrity-labs-'));
  beforeAll(async () => {
    cpSync(join(FIXTURE_LABS, 'fixture-one'), join(labsDir, 'fixture-one'), { recursive: true });
    writeToolSwapLab(labsDir);
    stack = await startTestStack({ overrides: { labsDir } });
    await stack.fillPool(ONE, 2, { timeoutMs: 60_000 });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
    rmSync(labsDir, { recursive: true, force: true });
  });

  /** A fresh active session of fixture-one, and a way to run commands as root in its VM. */
  async function activeSession(student: string, labId = 'fixture-one') {
    const { labvirt } = stack;
    const s = await labvirt.service.start({ student, labId });
    const active = await stack.untilSession(s.id, 'active', 60_000);
    const ctx = labvirt.context;
    const [node] = await envNodes(ctx.cluster, envNamespace(ctx.config, active.envId!), [
      'control-plane',
    ]);
    const target = { envId: active.envId!, node: 'control-plane' as const, ip: node!.ip };
    /** What the student can do after `sudo -i` in their VM. */
    const asRoot = async (script: string) => {
      const r = await ctx.executor.exec(target, `#!/bin/sh\n${script}`, {
        timeoutMs: 90_000,
        runAs: 'root',
      });
      expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
      return r.stdout;
    };
    /** The lab's check, run as labvirt would without the integrity step. */
    const bareCheck = () => {
      const check = labvirt.context.labs.get('fixture-one')!.checks[0]!;
      return ctx.executor.exec(target, check.content, { timeoutMs: 30_000, runAs: 'root' });
    };
    return { id: s.id, envId: active.envId!, asRoot, bareCheck };
  }

  const allMessages = (r: CheckResult) => r.checks.flatMap((c) => c.messages).join('\n');

  it('grades an untouched env normally: not solved, then solved', async () => {
    const { labvirt } = stack;
    const s = await activeSession('ivy');
    const before = await labvirt.service.check(s.id, 'ivy');
    expect(before.passed).toBe(false);
    expect(allMessages(before)).toMatch(/state says FIXME/);
    expect(allMessages(before)).not.toMatch(/tools were changed/);

    await s.asRoot('echo OK > /etc/fixture/state');
    const after = await labvirt.service.check(s.id, 'ivy');
    expect(after).toMatchObject({ passed: true, score: 1, maxScore: 1 });
    // Checking again (tools still as recorded) still passes.
    expect((await labvirt.service.check(s.id, 'ivy')).passed).toBe(true);
    await labvirt.service.stop(s.id);
  }, 90_000);

  it('refuses to grade after /bin/bash is replaced by one that fakes a pass', async () => {
    const { labvirt } = stack;
    const s = await activeSession('jack');
    // /bin is the guest's own symlink to usr/bin: root can swap it for a
    // directory whose `bash` exits 0 for any script that prints FAIL: lines
    // (labvirt's checks) and behaves normally otherwise.
    await s.asRoot(`set -e
mkdir /bin.fake
for f in /usr/bin/*; do ln -s "$f" "/bin.fake/\${f##*/}"; done
rm /bin.fake/bash
cat > /bin.fake/bash <<'EOF'
#!/usr/bin/sh
for a in "$@"; do
  case $a in /*) if [ -f "$a" ] && /usr/bin/grep -q 'FAIL:' "$a"; then exit 0; fi ;; esac
done
exec /usr/bin/bash "$@"
EOF
chmod 755 /bin.fake/bash
rm /bin && mv /bin.fake /bin
`);
    // The attack works on the bare runner: the unsolved lab "passes".
    expect((await s.bareCheck()).exitCode).toBe(0);

    const result = await labvirt.service.check(s.id, 'jack');
    expect(result.passed).toBe(false);
    expect(result.score).toBe(0);
    expect(allMessages(result)).toMatch(/the lab's tools were changed: .*\/bin\/bash was replaced/);
    expect((await labvirt.store.getSession(s.id))?.solvedAt).toBeUndefined();
    await labvirt.service.stop(s.id);
  }, 90_000);

  it('refuses to grade after a fake tool is put first on PATH', async () => {
    const { labvirt } = stack;
    const s = await activeSession('kate');
    // The sim's tool directory is read-only, but its parent is the guest's
    // own: moved aside, a directory of the student's takes its place, first
    // on the PATH labvirt's commands get. Its `cat` says the lab's state
    // file reads OK (and behaves normally for anything else).
    await s.asRoot(`set -e
mv /opt /opt.orig
mkdir -p /opt/labvirt-sim/bin
for f in /opt.orig/labvirt-sim/bin/*; do ln -s "$f" "/opt/labvirt-sim/bin/\${f##*/}"; done
cat > /opt/labvirt-sim/bin/cat <<'EOF'
#!/usr/bin/sh
case "$*" in */etc/fixture/state*) echo OK ;; *) exec /usr/bin/cat "$@" ;; esac
EOF
chmod 755 /opt/labvirt-sim/bin/cat
`);
    expect((await s.bareCheck()).exitCode).toBe(0);

    const result = await labvirt.service.check(s.id, 'kate');
    expect(result.passed).toBe(false);
    expect(allMessages(result)).toMatch(
      /the lab's tools were changed: .*\/opt\/labvirt-sim\/bin\/cat was added/,
    );
    // The tools put back, grading resumes (and the lab is still unsolved).
    await s.asRoot('rm -rf /opt && mv /opt.orig /opt');
    const restored = await labvirt.service.check(s.id, 'kate');
    expect(restored.passed).toBe(false);
    expect(allMessages(restored)).toMatch(/state says FIXME/);
    await labvirt.service.stop(s.id);
  }, 90_000);
  it("records the tool a lab's setup replaced with its new hash, and still grades", async () => {
    const { labvirt } = stack;
    const s = await activeSession('lena', 'tool-swap');
    const recorded = JSON.parse((await labvirt.store.getSession(s.id))!.tools!) as Record<
      string,
      { files: Record<string, string> }
    >;
    const labCat = createHash('sha256').update(LAB_CAT).digest('hex');
    expect(recorded['control-plane']?.files['/opt/labvirt-sim/bin/cat']).toBe(
      `/opt/labvirt-sim/bin/cat ${labCat}`,
    );

    const before = await labvirt.service.check(s.id, 'lena');
    expect(allMessages(before)).not.toMatch(/tools were changed/);
    expect(allMessages(before)).toMatch(/state says FIXME/);
    // The check ran with the lab's cat: it logged the read.
    expect(await s.asRoot('cat /var/tmp/lab-cat.log')).toMatch(/\/etc\/fixture\/state/);
    await s.asRoot('echo OK > /etc/fixture/state');
    expect(await labvirt.service.check(s.id, 'lena')).toMatchObject({ passed: true, score: 1 });
    await labvirt.service.stop(s.id);
  }, 120_000);

  it('hashes at warm-up, reuses those hashes at prepare for unchanged files, and hashes in full at check', async () => {
    const { labvirt } = stack;
    await stack.fillPool(ONE, 1, { timeoutMs: 60_000 });
    const [next] = await labvirt.store.warmEnvIds(ONE);
    const baseline = JSON.parse((await labvirt.store.envToolsBaseline(next!))!) as Record<
      string,
      { files: Record<string, string>; identities: Record<string, string> }
    >;
    const node = baseline['control-plane']!;
    const [bashResolved, bashSum] = node.files['/bin/bash']!.split(' ') as [string, string];
    expect(bashSum).toMatch(/^[0-9a-f]{64}$/);
    expect(node.identities[bashResolved]).toBeTruthy();
    // Stand in for stat data that lies (root can forge it): the warm-up record
    // now disagrees with the file while its identity is unchanged.
    const forged = '0'.repeat(64);
    for (const [file, entry] of Object.entries(node.files)) {
      if (entry === `${bashResolved} ${bashSum}`) node.files[file] = `${bashResolved} ${forged}`;
    }
    await labvirt.store.setEnvToolsBaseline(next!, JSON.stringify(baseline));

    const s = await activeSession('mona');
    expect(s.envId).toBe(next);
    // Prepare took the hash from the warm-up record (it did not hash bash again)…
    const recorded = JSON.parse((await labvirt.store.getSession(s.id))!.tools!) as Record<
      string,
      { files: Record<string, string> }
    >;
    expect(recorded['control-plane']?.files['/bin/bash']).toBe(`${bashResolved} ${forged}`);
    // …and the check hashed in full and did not trust it.
    const result = await labvirt.service.check(s.id, 'mona');
    expect(result.passed).toBe(false);
    expect(allMessages(result)).toMatch(/the lab's tools were changed: .*\/bin\/bash was replaced/);
    await labvirt.service.stop(s.id);
  }, 120_000);
});
