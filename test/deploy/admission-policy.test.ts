import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateObject } from '../../src/kube/index.js';
import { refusals, type AdmissionRequest } from '../helpers/admission-policy.js';
import { helmTemplate } from '../helpers/k8s-binaries.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CHART = join(ROOT, 'deploy', 'helm', 'labvirt');

type Obj = Record<string, unknown> & { kind: string; metadata: { name: string } };

const parse = (yaml: string): Obj[] =>
  parseAllDocuments(yaml)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);

interface Install {
  name: string;
  objects: () => Promise<Obj[]>;
  user: string;
  prefix: string;
  envRole: string;
}

const INSTALLS: Install[] = [
  {
    name: 'deploy/admission-policy.yaml',
    objects: async () => parse(readFileSync(join(ROOT, 'deploy', 'admission-policy.yaml'), 'utf8')),
    user: 'system:serviceaccount:labvirt:labvirt',
    prefix: 'lab-',
    envRole: 'labvirt-env',
  },
  {
    name: 'the Helm chart, another release, namespace and prefix',
    objects: async () =>
      parse(
        await helmTemplate(CHART, {
          release: 'training',
          namespace: 'labs-system',
          set: ['config.namespacePrefix=course-'],
        }),
      ),
    user: 'system:serviceaccount:labs-system:training-labvirt',
    prefix: 'course-',
    envRole: 'training-labvirt-env',
  },
];

const MANAGED = { 'app.kubernetes.io/managed-by': 'labvirt' };
const ns = (name: string, labels?: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, ...(labels ? { labels } : {}) },
});

describe.each(INSTALLS)('$name: labvirt writes only its own objects', (install) => {
  let objects: Obj[];
  const own = (id: string) => ns(`${install.prefix}${id}`, { ...MANAGED, 'labvirt.io/env': id });
  const asLabvirt = (r: Partial<AdmissionRequest>): string[] =>
    refusals(objects, {
      username: install.user,
      group: '',
      version: 'v1',
      resource: 'namespaces',
      operation: 'CREATE',
      object: null,
      oldObject: null,
      namespaceObject: null,
      ...r,
    });
  const binding = (namespace: string, over: Record<string, unknown> = {}) => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: 'labvirt', namespace },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: install.envRole },
    subjects: [
      {
        kind: 'ServiceAccount',
        namespace: install.user.split(':')[2],
        name: install.user.split(':')[3],
      },
    ],
    ...over,
  });
  const bind = (namespaceObject: unknown, object: unknown) =>
    asLabvirt({
      group: 'rbac.authorization.k8s.io',
      resource: 'rolebindings',
      object: object as never,
      namespaceObject: namespaceObject as never,
    });

  beforeAll(async () => {
    objects = (await install.objects()).filter((o) =>
      String(o.apiVersion).startsWith('admissionregistration.k8s.io/'),
    );
  }, 60_000);

  it('ships two policies, each bound with Deny, valid against the API schema', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
      'ValidatingAdmissionPolicyBinding',
    ]);
    expect(objects.flatMap((o) => validateObject(o))).toEqual([]);
  });

  it('lets labvirt create, label and delete its own env Namespaces', () => {
    expect(asLabvirt({ object: own('k3x9q2ab') })).toEqual([]);
    const claimed = own('k3x9q2ab');
    claimed.metadata.labels = { ...claimed.metadata.labels, 'labvirt.io/state': 'claimed' };
    expect(asLabvirt({ operation: 'UPDATE', object: claimed, oldObject: own('k3x9q2ab') })).toEqual(
      [],
    );
    expect(asLabvirt({ operation: 'DELETE', oldObject: own('k3x9q2ab') })).toEqual([]);
  });

  it('refuses labvirt any other Namespace: unprefixed, unlabelled, adopted, or disowned', () => {
    const refusedCreate = `labvirt may only create or change Namespaces named ${install.prefix}… and labelled app.kubernetes.io/managed-by=labvirt`;
    expect(asLabvirt({ object: ns('kube-system', MANAGED) })).toEqual([refusedCreate]);
    expect(asLabvirt({ object: ns(`${install.prefix}x`) })).toEqual([refusedCreate]);
    expect(
      asLabvirt({ object: ns(`${install.prefix}x`, { 'app.kubernetes.io/managed-by': 'helm' }) }),
    ).toEqual([refusedCreate]);
    const refusedOld = `labvirt may only change or delete its own Namespaces (named ${install.prefix}…, labelled app.kubernetes.io/managed-by=labvirt)`;
    expect(asLabvirt({ operation: 'DELETE', oldObject: ns('kube-system') })).toEqual([refusedOld]);
    expect(asLabvirt({ operation: 'DELETE', oldObject: ns(`${install.prefix}team`) })).toEqual([
      refusedOld,
    ]);
    // Adopting a foreign Namespace by labelling it, and dropping the label from its own.
    expect(
      asLabvirt({
        operation: 'UPDATE',
        object: own('team'),
        oldObject: ns(`${install.prefix}team`),
      }),
    ).toEqual([refusedOld]);
    expect(
      asLabvirt({ operation: 'UPDATE', object: ns(`${install.prefix}x`), oldObject: own('x') }),
    ).toEqual([refusedCreate]);
  });

  it('lets labvirt bind the env role to itself inside its own env Namespace, and nothing else', () => {
    const envNs = own('k3x9q2ab');
    const where = envNs.metadata.name;
    expect(bind(envNs, binding(where))).toEqual([]);
    expect(bind(ns('default'), binding('default'))).toEqual([
      `labvirt may only bind roles inside its own env Namespaces (named ${install.prefix}…, labelled app.kubernetes.io/managed-by=labvirt)`,
    ]);
    expect(
      bind(
        envNs,
        binding(where, {
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
        }),
      ),
    ).toEqual([`labvirt may only bind the ClusterRole ${install.envRole}`]);
    expect(bind(envNs, binding(where, { subjects: [{ kind: 'User', name: 'mallory' }] }))).toEqual([
      'labvirt may only bind the env role to itself',
    ]);
    expect(
      bind(
        envNs,
        binding(where, {
          subjects: [
            ...binding(where).subjects,
            { kind: 'ServiceAccount', namespace: where, name: 'default' },
          ],
        }),
      ),
    ).toEqual(['labvirt may only bind the env role to itself']);
  });

  it('leaves every other identity to RBAC alone (an operator may still manage Namespaces)', () => {
    expect(
      refusals(objects, {
        username: 'kubernetes-admin',
        group: '',
        version: 'v1',
        resource: 'namespaces',
        operation: 'DELETE',
        object: null,
        oldObject: ns('kube-system'),
        namespaceObject: null,
      }),
    ).toEqual([]);
  });
});
