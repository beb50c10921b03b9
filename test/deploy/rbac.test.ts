import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_ENV_CLUSTER_ROLE,
  KIND_RESOURCES,
  LABVIRT_PERMISSIONS,
  permissionKey,
  type PermissionScope,
} from '../../src/kube/index.js';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { openStudentApi } from '../helpers/student-envs.js';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface RbacObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
}

const RBAC_DOCS = parseAllDocuments(
  readFileSync(join(import.meta.dirname, '..', '..', 'deploy', 'rbac.yaml'), 'utf8'),
).map((d) => d.toJS() as RbacObject);

function roleRules(kind: 'ClusterRole' | 'Role', name: string): Rule[] {
  const role = RBAC_DOCS.find((d) => d.kind === kind && d.metadata.name === name);
  if (!role) throw new Error(`deploy/rbac.yaml has no ${kind} ${name}`);
  return role.rules ?? [];
}

/** Every grant of the rules, as `verb group/resource` (with `#name` where limited to one). */
function grants(rules: Rule[]): string[] {
  return [
    ...new Set(
      rules.flatMap((r) =>
        r.apiGroups.flatMap((group) =>
          r.resources.flatMap((resource) =>
            r.verbs.flatMap((verb) =>
              (r.resourceNames?.length ? r.resourceNames : ['']).map(
                (name) =>
                  `${permissionKey({ group, resource, verb: verb as never })}${name ? `#${name}` : ''}`,
              ),
            ),
          ),
        ),
      ),
    ),
  ].sort();
}

function granted(scope: PermissionScope): string[] {
  return [
    ...new Set(
      LABVIRT_PERMISSIONS.filter((p) => p.scope === scope).map(
        (p) => `${permissionKey(p)}${p.resourceName ? `#${DEFAULT_ENV_CLUSTER_ROLE}` : ''}`,
      ),
    ),
  ].sort();
}

/** `verb Kind` as HostCluster.onRequest reports it, in the form permissions are compared in. */
function asPermission(call: string): string {
  const [verb, kind] = call.split(' ') as [string, string];
  const target = KIND_RESOURCES[kind];
  if (!target) return `${verb} unknown-kind/${kind}`;
  return permissionKey({ ...target, verb: verb as never });
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
        // The sync's Namespace watch starts before the listener below: a short
        // resync makes it list and watch again while the listener counts.
        sync: { resyncSeconds: 1 },
      },
    });
    stack.labvirt.context.cluster.onRequest((verb, kind) => calls.add(`${verb} ${kind}`));
    // The shared VMI watch also opened before the listener: cut it so it is seen watching again.
    stack.sim.faults.dropWatches();
    // The first VM fails to boot: provisioning replaces it (the VMI delete).
    stack.sim.faults.failNextVmis = 1;
    // Bounds for a loaded machine: each wait ends as soon as its condition holds.
    await stack.fillPool('v1.30-1node', 1, { timeoutMs: 90_000 });
    const s = await stack.labvirt.service.start({ student: 'rbac', labId: 'fixture-one' });
    const active = await stack.untilSession(s.id, 'active', 90_000);
    await stack.labvirt.service.check(s.id);
    // The NodePort sync's whole cycle: a mirror made, changed, shown, removed at the end.
    const ctx = stack.labvirt.context;
    const ns = `${ctx.config.namespacePrefix}${active.envId}`;
    const cp = (await ctx.cluster.listVmis(ns)).find((v) => v.name === 'control-plane')!;
    const ip = (await ctx.cluster.launcherAddresses(ns)).get(cp.uid!)!;
    const closers: (() => void | Promise<void>)[] = [];
    const student = await openStudentApi(
      ctx.executor,
      { envId: active.envId!, node: 'control-plane', ip },
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
    // The student removes their Service: its mirror goes (at session end the
    // mirrors go with the env's Namespace).
    await student.deleteNamespacedService({ namespace: 'default', name: 'web' });
    await stack.until(async () => !(await mirrored(32123)), 'mirror removed');
    for (const close of closers) await close();
    await stack.labvirt.service.stop(s.id);
    await stack.until(
      async () => !(await stack.labvirt.store.getEnv(s.envId ?? '')),
      'teardown',
      90_000,
    );
    await stack.labvirt.runMaintenance('reconcile');
    // The readiness probe.
    await stack.labvirt.service.health();
  }, 400_000);
  afterAll(async () => stack?.stop(), 120_000);

  it('src/kube/permissions.ts lists every call made, and nothing that is never called', () => {
    const made = [...new Set([...calls].map(asPermission))].sort();
    // `bind` is no call: it is what the API server checks when labvirt creates its RoleBinding.
    const listed = LABVIRT_PERMISSIONS.filter((p) => p.verb !== 'bind').map(permissionKey);
    expect(made).toEqual([...new Set(listed)].sort());
  });

  it('deploy/rbac.yaml grants exactly what the code lists, each in its scope, without wildcards', () => {
    expect(grants(roleRules('ClusterRole', 'labvirt'))).toEqual(granted('cluster'));
    expect(grants(roleRules('ClusterRole', DEFAULT_ENV_CLUSTER_ROLE))).toEqual(granted('env'));
    expect(grants(roleRules('Role', 'labvirt-keys'))).toEqual(granted('own'));
    for (const r of RBAC_DOCS.flatMap((d) => d.rules ?? [])) {
      expect(r.verbs).not.toContain('*');
      expect(r.resources).not.toContain('*');
      expect(r.apiGroups).not.toContain('*');
    }
  });

  it("no Secret is readable cluster-wide: only in env Namespaces (bound there) and labvirt's own", () => {
    const clusterWide = grants(roleRules('ClusterRole', 'labvirt'));
    expect(clusterWide.filter((g) => g.includes('core/secrets'))).toEqual([]);
    const bindings = RBAC_DOCS.filter((d) => d.kind === 'ClusterRoleBinding') as unknown as {
      roleRef: { name: string };
    }[];
    expect(bindings.map((b) => b.roleRef.name)).toEqual(['labvirt']);
  });
});
