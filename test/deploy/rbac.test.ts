import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { openStudentApi } from '../helpers/student-envs.js';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

const KIND_TO_RESOURCE: Record<string, { group: string; resource: string }> = {
  Namespace: { group: '', resource: 'namespaces' },
  Node: { group: '', resource: 'nodes' },
  Secret: { group: '', resource: 'secrets' },
  Service: { group: '', resource: 'services' },
  ConfigMap: { group: '', resource: 'configmaps' },
  ResourceQuota: { group: '', resource: 'resourcequotas' },
  LimitRange: { group: '', resource: 'limitranges' },
  NetworkPolicy: { group: 'networking.k8s.io', resource: 'networkpolicies' },
  VirtualMachine: { group: 'kubevirt.io', resource: 'virtualmachines' },
  VirtualMachineInstance: { group: 'kubevirt.io', resource: 'virtualmachineinstances' },
};

function clusterRoleRules(): Rule[] {
  const docs = parseAllDocuments(
    readFileSync(join(import.meta.dirname, '..', '..', 'deploy', 'rbac.yaml'), 'utf8'),
  ).map((d) => d.toJS() as { kind: string; metadata: { name: string }; rules?: Rule[] });
  return docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'labvirt')?.rules ?? [];
}

function allowed(rules: Rule[], verb: string, kind: string): boolean {
  const target = KIND_TO_RESOURCE[kind];
  if (!target) return false;
  return rules.some(
    (r) =>
      r.apiGroups.includes(target.group) &&
      r.resources.includes(target.resource) &&
      r.verbs.includes(verb),
  );
}

describe('deploy/rbac.yaml: least privilege that still covers everything labvirt does', () => {
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
  }, 120_000);
  afterAll(async () => stack?.stop());

  it('allows every API call of a whole env lifecycle, and nothing labvirt never does', () => {
    const rules = clusterRoleRules();
    expect(calls.size).toBeGreaterThan(3);
    const denied = [...calls].filter((c) => {
      const [verb, kind] = c.split(' ');
      return !allowed(rules, verb!, kind!);
    });
    expect(denied).toEqual([]);
    // What the NodePort sync was granted, it used.
    for (const call of [
      'create Service',
      'update Service',
      'delete Service',
      'create NetworkPolicy',
      'update NetworkPolicy',
      'delete NetworkPolicy',
      'list Node',
    ])
      expect(calls).toContain(call);
    // No wildcards, no cluster-admin-like grants.
    for (const r of rules) {
      expect(r.verbs).not.toContain('*');
      expect(r.resources).not.toContain('*');
      expect(r.apiGroups).not.toContain('*');
    }
  });
});
