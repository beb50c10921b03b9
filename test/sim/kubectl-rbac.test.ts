import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSim, type SimHandle } from '../../src/sim/index.js';
import { kubectl as runKubectl, type KubectlResult } from '../helpers/kubectl.js';

/**
 * RBAC with kubectl v1.32: the admin of the generated kubeconfig can do
 * everything; a ServiceAccount's token (`kubectl create token`) can do what
 * its Roles and ClusterRoles grant, with the real semantics of wildcards,
 * resourceNames, subresources and non-resource URLs, and `auth can-i`,
 * `auth can-i --list` and `auth whoami` answer from the same rules.
 */
describe('kubectl and RBAC against the sim', () => {
  let sim: SimHandle;
  let dir: string;
  let token: string;
  const kubectl = (args: string[], stdin?: string): Promise<KubectlResult> =>
    runKubectl(sim.kubeconfigPath, args, { cacheDir: join(dir, 'kube-cache'), stdin });
  const ok = async (args: string[], stdin?: string): Promise<string> => {
    const r = await kubectl(args, stdin);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  };
  const asBot = (args: string[]) => kubectl([`--token=${token}`, ...args]);
  const botCan = async (...args: string[]) =>
    (await asBot(['auth', 'can-i', ...args, '-n', 'team'])).stdout.trim();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-kubectl-rbac-'));
    sim = await startSim({ dir, speed: 200, guests: false });
    await ok(['create', 'namespace', 'team']);
    await ok(['create', 'serviceaccount', 'bot', '-n', 'team']);
    token = (await ok(['create', 'token', 'bot', '-n', 'team', '--duration=1h'])).trim();
  });
  afterAll(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the admin of the generated kubeconfig may do anything', async () => {
    const adminCan = async (...args: string[]) =>
      (await kubectl(['auth', 'can-i', ...args])).stdout.trim();
    expect(await adminCan('delete', 'nodes')).toBe('yes');
    expect(await adminCan('*', '*')).toBe('yes');
    expect(await adminCan('get', '/metrics')).toBe('yes');
  });

  it('a token from `kubectl create token` is the ServiceAccount, and may do nothing ungranted', async () => {
    expect(token).not.toBe('');
    const who = await asBot(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
    expect(who.stdout).toBe('system:serviceaccount:team:bot');
    const pods = await asBot(['get', 'pods', '-n', 'team']);
    expect(pods.code).toBe(1);
    expect(pods.stderr).toContain(
      'pods is forbidden: User "system:serviceaccount:team:bot" cannot list resource "pods" in API group "" in the namespace "team"',
    );
    // Discovery and self-reviews are everyone's (system:discovery, system:basic-user).
    expect(await botCan('get', '/apis')).toBe('yes');
    const bad = await kubectl(['--token=not-a-token', 'get', 'ns']);
    expect(bad.stderr).toContain('Unauthorized');
  });

  it('`--as` acts as another user where the caller may impersonate, as a real server does', async () => {
    await ok(['create', 'serviceaccount', 'watcher', '-n', 'team']);
    const watcher = 'system:serviceaccount:team:watcher';
    // The admin checks what labvirt's (or any) ServiceAccount may do: its answer, not the admin's.
    const can = await kubectl(['auth', 'can-i', 'list', 'pods', '-n', 'team', `--as=${watcher}`]);
    expect(can.stdout.trim()).toBe('no');
    expect(can.code).toBe(1);
    const pods = await kubectl(['get', 'pods', '-n', 'team', `--as=${watcher}`]);
    expect(pods.code).toBe(1);
    expect(pods.stderr).toContain(
      `pods is forbidden: User "${watcher}" cannot list resource "pods" in API group "" in the namespace "team"`,
    );
    const who = await ok(['auth', 'whoami', `--as=${watcher}`, '-o', 'json']);
    expect(JSON.parse(who).status.userInfo).toEqual({
      username: watcher,
      groups: ['system:serviceaccounts', 'system:serviceaccounts:team', 'system:authenticated'],
    });
    // Groups are impersonated too.
    const jane = ['--as=jane', '--as-group=system:masters'];
    expect((await kubectl(['auth', 'can-i', 'delete', 'nodes', ...jane])).stdout.trim()).toBe(
      'yes',
    );
    // A caller without `impersonate` is refused, naming what it tried.
    const denied = await asBot(['get', 'pods', '-n', 'team', `--as=${watcher}`]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain(
      'serviceaccounts "watcher" is forbidden: User "system:serviceaccount:team:bot" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "team"',
    );
  });

  it('Roles and bindings grant with verbs, wildcards, resourceNames and subresources', async () => {
    await ok([
      'create',
      'role',
      'reader',
      '--verb=get,list,watch',
      '--resource=pods,pods/log',
      '-n',
      'team',
    ]);
    await ok([
      'create',
      'role',
      'one-secret',
      '--verb=get',
      '--resource=secrets',
      '--resource-name=allowed',
      '-n',
      'team',
    ]);
    await ok([
      'create',
      'rolebinding',
      'bot-reader',
      '--role=reader',
      '--serviceaccount=team:bot',
      '-n',
      'team',
    ]);
    await ok([
      'create',
      'rolebinding',
      'bot-secret',
      '--role=one-secret',
      '--serviceaccount=team:bot',
      '-n',
      'team',
    ]);
    expect(await botCan('list', 'pods')).toBe('yes');
    expect(await botCan('get', 'pods', '--subresource=log')).toBe('yes');
    expect(await botCan('get', 'pods', '--subresource=exec')).toBe('no');
    expect(await botCan('delete', 'pods')).toBe('no');
    expect(await botCan('get', 'secrets/allowed')).toBe('yes');
    expect(await botCan('get', 'secrets/other')).toBe('no');
    expect(await botCan('list', 'secrets')).toBe('no');
    // A namespace's RoleBinding grants nothing elsewhere.
    expect((await asBot(['auth', 'can-i', 'list', 'pods', '-n', 'default'])).stdout.trim()).toBe(
      'no',
    );

    // A ClusterRole with wildcards, bound in one namespace.
    await ok([
      'create',
      'clusterrole',
      'vm-anything',
      '--verb=*',
      '--resource=virtualmachines.kubevirt.io,*/status',
    ]);
    await ok([
      'create',
      'rolebinding',
      'bot-vms',
      '--clusterrole=vm-anything',
      '--serviceaccount=team:bot',
      '-n',
      'team',
    ]);
    expect(await botCan('delete', 'virtualmachines.kubevirt.io')).toBe('yes');
    expect(await botCan('patch', 'pods', '--subresource=status')).toBe('yes');
    expect(await botCan('delete', 'virtualmachineinstances.kubevirt.io')).toBe('no');

    // Non-resource URLs only through ClusterRoleBindings.
    await ok(['create', 'clusterrole', 'metrics', '--verb=get', '--non-resource-url=/metrics*']);
    expect(await botCan('get', '/metrics/cadvisor')).toBe('no');
    await ok([
      'create',
      'clusterrolebinding',
      'bot-metrics',
      '--clusterrole=metrics',
      '--serviceaccount=team:bot',
    ]);
    expect(await botCan('get', '/metrics/cadvisor')).toBe('yes');
    expect(await botCan('post', '/metrics')).toBe('no');
  }, 120_000); // some twenty kubectl runs: slow on a loaded machine

  it('what a token is allowed it really can do, and can-i --list says so', async () => {
    const list = await asBot(['get', 'pods', '-n', 'team']);
    expect(list.code).toBe(0);
    const rules = await asBot(['auth', 'can-i', '--list', '-n', 'team']);
    expect(rules.stdout).toMatch(/^pods\s+\[\]\s+\[\]\s+\[get list watch\]$/m);
    expect(rules.stdout).toMatch(/^secrets\s+\[\]\s+\[allowed\]\s+\[get\]$/m);
  });

  it('SubjectAccessReview answers for any user, and tokens die with their ServiceAccount', async () => {
    const review = join(dir, 'sar.json');
    writeFileSync(
      review,
      JSON.stringify({
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: 'system:serviceaccount:team:bot',
          groups: ['system:serviceaccounts'],
          resourceAttributes: { namespace: 'team', verb: 'list', resource: 'pods' },
        },
      }),
    );
    expect(await ok(['create', '-f', review, '-o', 'jsonpath={.status.allowed}'])).toBe('true');

    await ok(['delete', 'serviceaccount', 'bot', '-n', 'team']);
    const gone = await asBot(['get', 'pods', '-n', 'team']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('Unauthorized');
  });
});
