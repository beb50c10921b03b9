import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../helpers/stack.js';
import { kubectl } from '../helpers/kubectl.js';
import type { RbacDecision } from '../../src/sim/index.js';

const RBAC_YAML = join(import.meta.dirname, '..', '..', 'deploy', 'rbac.yaml');
const SERVICE_ACCOUNT = 'system:serviceaccount:labvirt:labvirt';

/**
 * labvirt runs as the ServiceAccount of deploy/rbac.yaml, with the token
 * `kubectl create token` would give it, against the sim enforcing RBAC: a
 * permission the file lacks makes a request 403 and fails this test.
 */
describe('deploy/rbac.yaml enforced: labvirt under its own ServiceAccount', () => {
  let stack: TestStack;
  const decisions = () => stack.sim.rbacDecisions.filter((d) => d.user === SERVICE_ACCOUNT);
  /**
   * Refusals, except inside a Namespace labvirt already deleted: its contents,
   * labvirt's RoleBinding among them, go in any order, and a late Event or a
   * NodePort mirror's cleanup there is refused as on a real cluster (and
   * tolerated).
   */
  const refusedRequests = () => {
    const deleted = new Set<string>();
    const refused: RbacDecision[] = [];
    for (const d of decisions()) {
      if (d.allowed && d.verb === 'delete' && d.resource === 'namespaces') deleted.add(d.name);
      else if (!d.allowed && !deleted.has(d.namespace)) refused.push(d);
    }
    return refused;
  };
  const refusedNames = () => [
    ...new Set(
      refusedRequests().map(
        (d) =>
          `${d.verb} ${d.resource}${d.subresource ? `/${d.subresource}` : ''}${d.apiGroup ? `.${d.apiGroup}` : ''}`,
      ),
    ),
  ];
  beforeAll(async () => {
    stack = await startTestStack({
      overrides: {
        flavors: {
          'v1.30-1node': { kubernetesVersion: '1.30', nodes: 1, minWarm: 1, maxTotal: 2 },
        },
      },
      // What an operator does: create labvirt's namespace, apply the file, run as the account.
      kubeconfig: async (sim) => {
        for (const args of [
          ['create', 'namespace', 'labvirt'],
          ['apply', '-f', RBAC_YAML],
        ]) {
          const r = await kubectl(sim.kubeconfigPath, args);
          if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
        }
        return sim.kubeconfigFor('labvirt', 'labvirt');
      },
    });
    try {
      await stack.fillPool('v1.30-1node', 1, { timeoutMs: 60_000 });
      const s = await stack.labvirt.service.start({ student: 'rbac', labId: 'fixture-one' });
      await stack.untilSession(s.id, 'active');
      await stack.labvirt.service.check(s.id);
      await stack.labvirt.service.stop(s.id);
      await stack.until(async () => !(await stack.labvirt.store.getEnv(s.envId ?? '')), 'teardown');
      await stack.labvirt.runMaintenance('reconcile');
    } catch (err) {
      // Say which permission was missing rather than only that nothing happened.
      throw new Error(
        `${(err as Error).message}; refused to labvirt: ${refusedNames().join(', ') || 'nothing'}`,
      );
    }
  }, 180_000);
  afterAll(async () => stack?.stop());

  it('labvirt is never refused anything during a whole env lifecycle', () => {
    expect(decisions().length).toBeGreaterThan(10);
    expect(refusedNames()).toEqual([]);
  });

  it('what the file does not grant is refused to the same account', async () => {
    const asLabvirt = stack.sim.kubeconfigFor('labvirt', 'labvirt');
    const pods = await kubectl(asLabvirt, ['get', 'pods', '-A']);
    expect(pods.code).toBe(1);
    expect(pods.stderr).toContain(
      `pods is forbidden: User "${SERVICE_ACCOUNT}" cannot list resource "pods" in API group "" at the cluster scope`,
    );
    const canI = await kubectl(asLabvirt, [
      'auth',
      'can-i',
      'create',
      'configmaps',
      '-n',
      'default',
    ]);
    expect(canI.stdout.trim()).toBe('no');
    const keys = await kubectl(asLabvirt, ['auth', 'can-i', 'create', 'secrets', '-n', 'labvirt']);
    expect(keys.stdout.trim()).toBe('yes');
    // No Secret outside its own namespace and the env Namespaces it binds itself into.
    const allSecrets = await kubectl(asLabvirt, ['get', 'secrets', '-A']);
    expect(allSecrets.code).toBe(1);
    expect(allSecrets.stderr).toContain(
      `secrets is forbidden: User "${SERVICE_ACCOUNT}" cannot list resource "secrets" in API group "" at the cluster scope`,
    );
    for (const ns of ['default', 'kube-system']) {
      const read = await kubectl(asLabvirt, ['auth', 'can-i', 'get', 'secrets', '-n', ns]);
      expect(read.stdout.trim()).toBe('no');
    }
    // It may bind the env role, and no other.
    const bindEnv = await kubectl(asLabvirt, ['auth', 'can-i', 'bind', 'clusterroles/labvirt-env']);
    expect(bindEnv.stdout.trim()).toBe('yes');
    const bindAdmin = await kubectl(asLabvirt, ['auth', 'can-i', 'bind', 'clusterroles/admin']);
    expect(bindAdmin.stdout.trim()).toBe('no');
  });
});
