import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KIND_RESOURCES, LABVIRT_PERMISSIONS, permissionKey } from '../../src/kube/index.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { openStudentApi } from '../helpers/student-envs.js';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

function clusterRoleRules(): Rule[] {
  const docs = parseAllDocuments(
    readFileSync(join(import.meta.dirname, '..', '..', 'deploy', 'rbac.yaml'), 'utf8'),
  ).map((d) => d.toJS() as { kind: string; metadata: { name: string }; rules?: Rule[] });
  return docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'labvirt')?.rules ?? [];
}

/** `verb Kind` as HostCluster.onRequest reports it, in the form permissions are compared in. */
function asPermission(call: string): string {
  const [verb, kind] = call.split(' ') as [string, string];
  const target = KIND_RESOURCES[kind];
  if (!target) return `${verb} unknown-kind/${kind}`;
  return permissionKey({ ...target, verb: verb as never });
}

function allowed(rules: Rule[], permission: string): boolean {
  const [verb, groupResource] = permission.split(' ') as [string, string];
  const [group, resource] = groupResource.split('/') as [string, string];
  return rules.some(
    (r) =>
      r.apiGroups.includes(group === 'core' ? '' : group) &&
      r.resources.includes(resource) &&
      r.verbs.includes(verb),
  );
}

describe('the permissions labvirt needs, from what a whole env lifecycle really calls', () => {
  let stack: TestStack;
  const calls = new Set<string>();
  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 2 },
        },
      },
    });
    stack.labvirt.context.cluster.onRequest((verb, kind) => calls.add(`${verb} ${kind}`));
    // The first VM fails to boot: provisioning replaces it (the VMI delete).
    stack.sim.faults.failNextVmis = 1;
    await stack.labvirt.runMaintenance('replenish');
    await stack.until(async () => (await stack.warmCount('v1.30-1node')) >= 1, 'a warm env');
    const s = await stack.labvirt.service.start({ student: 'rbac', labId: 'fixture-one' });
    const active = await stack.untilSession(s.id, 'active');
    await stack.labvirt.service.check(s.id);
    // The NodePort sync's whole cycle: a mirror made, changed, shown, removed at the end.
    const ctx = stack.labvirt.context;
    const ns = `${ctx.config.namespacePrefix}${active.envId}`;
    const cp = (await ctx.cluster.listVmis(ns)).find((v) => v.name === 'control-plane')!;
    const closers: (() => void | Promise<void>)[] = [];
    const student = await openStudentApi(
      ctx.executor,
      { envId: active.envId!, node: 'control-plane', ip: cp.ip! },
      closers,
    );
    const svc = await student.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name: 'web' }, spec: { type: 'NodePort', ports: [{ port: 80 }] } },
    });
    const mirrored = async (nodePort: number) =>
      (await stack.labvirt.service.status(s.id)).ports?.published.some(
        (p) => p.studentNodePort === nodePort,
      );
    await stack.until(() => mirrored(svc.spec!.ports![0]!.nodePort!), 'mirror');
    svc.spec!.ports![0]!.nodePort = 32123;
    await student.replaceNamespacedService({ namespace: 'default', name: 'web', body: svc });
    await stack.until(() => mirrored(32123), 'mirror follows the new node port');
    for (const close of closers) await close();
    await stack.labvirt.service.stop(s.id);
    await stack.until(async () => !(await stack.labvirt.store.getEnv(s.envId ?? '')), 'teardown');
    await stack.labvirt.runMaintenance('reconcile');
    // The readiness probe.
    await stack.labvirt.service.health();
  }, 120_000);
  afterAll(async () => stack?.stop());

  it('src/kube/permissions.ts lists every call made, and nothing that is never called', () => {
    const made = [...new Set([...calls].map(asPermission))].sort();
    expect(made).toEqual(LABVIRT_PERMISSIONS.map(permissionKey).sort());
  });

  it('deploy/rbac.yaml allows every call, without wildcards', () => {
    const rules = clusterRoleRules();
    expect(LABVIRT_PERMISSIONS.map(permissionKey).filter((p) => !allowed(rules, p))).toEqual([]);
    for (const r of rules) {
      expect(r.verbs).not.toContain('*');
      expect(r.resources).not.toContain('*');
      expect(r.apiGroups).not.toContain('*');
    }
  });
});
