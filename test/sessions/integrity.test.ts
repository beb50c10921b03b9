import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envNamespace } from '../../src/kube/index.js';
import { envNodes } from '../../src/pool/nodes.js';
import type { CheckResult } from '../../src/sessions/types.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';

const ONE = 'v1.30-1node';

/**
 * A student with root in their VM (sudo) tries to fake a pass by changing the
 * tools a check relies on. Each attack is first shown to work on the bare
 * command runner (the lab's own check script exits 0 on an unsolved env), then
 * `check` must refuse to grade and say why.
 */
describe('grading integrity: a student who changes the lab tools cannot fake a pass', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
    await stack.labvirt.runMaintenance('replenish');
    await stack.until(async () => (await stack.warmCount(ONE)) >= 2, 'warm pool', 60_000);
  }, 120_000);
  afterAll(async () => stack?.stop());

  /** A fresh active session of fixture-one, and a way to run commands as root in its VM. */
  async function activeSession(student: string) {
    const { labvirt } = stack;
    const s = await labvirt.service.start({ student, labId: 'fixture-one' });
    const active = await stack.untilSession(s.id, 'active', 60_000);
    const ctx = labvirt.context;
    const [node] = await envNodes(ctx.cluster, envNamespace(ctx.config, active.envId!), [
      'control-plane',
    ]);
    const target = { envId: active.envId!, node: 'control-plane' as const, ip: node!.ip };
    /** What the student can do after `sudo -i` in their VM. */
    const asRoot = async (script: string) => {
      const r = await ctx.executor.exec(target, `#!/bin/sh\n${script}`, {
        timeoutMs: 30_000,
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
    return { id: s.id, asRoot, bareCheck };
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
});
