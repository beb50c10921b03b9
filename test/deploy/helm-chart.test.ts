import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import {
  DOCTOR_PERMISSIONS,
  DOCTOR_IMAGE_PERMISSIONS,
  ENV_ROLE,
  LABVIRT_PERMISSIONS,
  evaluateNetworkPolicies,
  permissionKey,
  type PermissionScope,
  selectorMatches,
  validateObject,
} from '../../src/kube/index.js';
import { helmTemplate } from '../helpers/k8s-binaries.js';

const CHART = join(import.meta.dirname, '..', '..', 'deploy', 'helm', 'labvirt');

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface Container {
  name: string;
  args?: string[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string } };
  }[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string } };
  readinessProbe?: { httpGet?: { path: string; port: string } };
  securityContext?: Record<string, unknown>;
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: {
    containers: Container[];
    securityContext?: Record<string, unknown>;
    terminationGracePeriodSeconds?: number;
  };
}

async function render(set: string[] = [], valuesFiles: string[] = []): Promise<Obj[]> {
  const yaml = await helmTemplate(CHART, { set, valuesFiles });
  return parseAllDocuments(yaml)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

const find = (objs: Obj[], kind: string, name?: string): Obj | undefined =>
  objs.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));

function mustFind(objs: Obj[], kind: string, name?: string): Obj {
  const o = find(objs, kind, name);
  if (!o) throw new Error(`no ${kind} ${name ?? ''} rendered`);
  return o;
}

/** Every problem of every object, as a strict API server would report them. */
function problems(objs: Obj[]): string[] {
  return objs.flatMap((o) => {
    const name = `${o.kind} ${o.metadata.name}`;
    if (o.kind === 'ServiceMonitor') {
      // A CRD of the Prometheus Operator: its own published schema.
      try {
        new ServiceMonitor(o as never).validate();
        return [];
      } catch (err) {
        return [`${name}: ${(err as Error).message}`];
      }
    }
    return validateObject(o).map((p) => `${name}: ${p.path}: ${p.message}`);
  });
}

/**
 * On SIGTERM labvirt works on for `pool.shutdownGraceSeconds`, then hands its
 * running jobs back and closes (giving up on a part 5 s after the grace): the
 * pod's terminationGracePeriodSeconds must outlast all of it, or the SIGKILL
 * lands before the hand-back.
 */
function expectRoomToHandBack(objs: Obj[]): void {
  const grace = effectiveConfig(objs).pool.shutdownGraceSeconds;
  const pod = podTemplate(mustFind(objs, 'Deployment', 'labvirt')).spec;
  expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(grace + 15);
}

function podTemplate(o: Obj): PodTemplate {
  return (o.spec as { template: PodTemplate }).template;
}

/** Every grant of the rules, as `verb group/resource` (with `#name` where limited to one). */
function grants(rules: Rule[]): string[] {
  return rules
    .flatMap((r) =>
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
    )
    .sort();
}

/** What the code lists for one scope, in the form of `grants`. */
function listed(scope: PermissionScope, envRole: string): string[] {
  return [
    ...new Set(
      LABVIRT_PERMISSIONS.filter((p) => p.scope === scope).map(
        (p) => `${permissionKey(p)}${p.resourceName === ENV_ROLE ? `#${envRole}` : ''}`,
      ),
    ),
  ].sort();
}

/** labvirt's configuration as the pod reads it: the ConfigMap's file plus the pod's env. */
function effectiveConfig(objs: Obj[], env: Record<string, string> = {}, configMap = 'labvirt') {
  const cm = mustFind(objs, 'ConfigMap', configMap) as Obj & { data: Record<string, string> };
  const dir = mkdtempSync(join(tmpdir(), 'labvirt-chart-'));
  try {
    const file = join(dir, 'labvirt.yaml');
    writeFileSync(file, cm.data['labvirt.yaml']!);
    return loadConfig({ file, env });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('deploy/helm/labvirt with default values', () => {
  let objs: Obj[];
  beforeAll(async () => {
    objs = await render();
  }, 60_000);

  it('renders the whole install, and every object validates strictly', () => {
    expect(objs.map((o) => `${o.kind} ${o.metadata.name}`).sort()).toEqual(
      [
        'ClusterRole labvirt',
        'ClusterRole labvirt-doctor',
        'ClusterRole labvirt-env',
        'ClusterRoleBinding labvirt',
        'ClusterRoleBinding labvirt-doctor',
        'ConfigMap labvirt',
        'ConfigMap labvirt-gateway',
        'Deployment labvirt',
        'Deployment labvirt-gateway',
        'NetworkPolicy labvirt-gateway',
        'NetworkPolicy labvirt-orchestrator',
        'NetworkPolicy labvirt-redis',
        'PodDisruptionBudget labvirt',
        'Role labvirt-doctor',
        'Role labvirt-doctor-images',
        'Role labvirt-keys',
        'RoleBinding labvirt-doctor',
        'RoleBinding labvirt-doctor-images',
        'RoleBinding labvirt-keys',
        'Secret labvirt',
        'Secret labvirt-redis-auth',
        'Service labvirt',
        'Service labvirt-redis',
        'Service labvirt-ssh',
        'ServiceAccount labvirt',
        'ServiceAccount labvirt-gateway',
        'StatefulSet labvirt-redis',
        'ValidatingAdmissionPolicy labvirt-namespaces',
        'ValidatingAdmissionPolicy labvirt-rolebindings',
        'ValidatingAdmissionPolicyBinding labvirt-namespaces',
        'ValidatingAdmissionPolicyBinding labvirt-rolebindings',
      ].sort(),
    );
    expect(problems(objs)).toEqual([]);
  });

  it('the validator would notice a misspelt field in the chart (it is strict for these kinds)', () => {
    const deployment = structuredClone(mustFind(objs, 'Deployment'));
    (
      podTemplate(deployment).spec.containers[0] as unknown as Record<string, unknown>
    ).imagePullPolice = 'Always';
    expect(problems([deployment])).toEqual([
      expect.stringContaining('unknown field "imagePullPolice"'),
    ]);
  });

  it('runs two replicas of the image built from the Dockerfile, non-root, with probes on /healthz and /readyz', () => {
    const deployment = mustFind(objs, 'Deployment', 'labvirt');
    expect((deployment.spec as { replicas: number }).replicas).toBe(2);
    const pod = podTemplate(deployment);
    expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    const c = pod.spec.containers[0]!;
    expect(c).toMatchObject({
      image: 'ghcr.io/labvirt/labvirt:0.1.0',
      // Everything but the SSH gateway, which runs apart.
      args: [
        'serve',
        '--config',
        '/etc/labvirt/labvirt.yaml',
        '--roles',
        'api,workers,scheduler,sync',
      ],
      livenessProbe: { httpGet: { path: '/healthz', port: 'api' } },
      readinessProbe: { httpGet: { path: '/readyz', port: 'api' } },
      securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
    });
    const config = effectiveConfig(objs);
    expect(c.ports).toEqual([{ name: 'api', containerPort: config.api.port, protocol: 'TCP' }]);
    // The PodDisruptionBudget keeps one running through node drains.
    const pdb = mustFind(objs, 'PodDisruptionBudget').spec as {
      minAvailable: number;
      selector: { matchLabels: Record<string, string> };
    };
    expect(pdb.minAvailable).toBe(1);
    expect(selectorMatches(pdb.selector, pod.metadata.labels)).toBe(true);
  });

  it("lets labvirt hand its jobs back on SIGTERM before the kubelet's SIGKILL", () => {
    expectRoomToHandBack(objs);
  });

  it('runs the SSH gateway as its own Deployment without any Kubernetes credentials', () => {
    const gateway = mustFind(objs, 'Deployment', 'labvirt-gateway');
    const pod = podTemplate(gateway) as PodTemplate & {
      spec: {
        serviceAccountName: string;
        automountServiceAccountToken: boolean;
        volumes: { name: string; secret?: { secretName: string } }[];
      };
    };
    const sa = mustFind(objs, 'ServiceAccount', 'labvirt-gateway') as Obj & {
      automountServiceAccountToken: boolean;
    };
    expect(pod.spec.serviceAccountName).toBe('labvirt-gateway');
    expect(sa.automountServiceAccountToken).toBe(false);
    expect(pod.spec.automountServiceAccountToken).toBe(false);
    // Bound to no role at all.
    const bound = objs
      .filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding')
      .flatMap((b) => (b as Obj & { subjects: { name: string }[] }).subjects.map((x) => x.name));
    expect(bound).not.toContain('labvirt-gateway');
    const c = pod.spec.containers[0]!;
    expect(c.args).toEqual([
      'serve',
      '--config',
      '/etc/labvirt/labvirt.yaml',
      '--roles',
      'gateway',
    ]);
    const gatewayConfig = effectiveConfig(objs, {}, 'labvirt-gateway');
    expect(c.ports).toEqual([
      { name: 'ssh', containerPort: gatewayConfig.ssh.gatewayPort, protocol: 'TCP' },
    ]);
    // No API token; its two keys are files from the Secrets the orchestrator makes.
    expect(c.env?.map((e) => e.name)).toEqual(['LABVIRT_REDIS_URL']);
    expect(gatewayConfig.ssh.hostKey).toBe('/etc/labvirt/keys/host/ssh-privatekey');
    expect(gatewayConfig.ssh.gatewayClientKey).toBe('/etc/labvirt/keys/client/ssh-privatekey');
    const main = effectiveConfig(objs);
    // Only its host key and its client key: not the web bridge's key, no env's key.
    expect(
      pod.spec.volumes.flatMap((v) => (v.secret ? [`secret:labvirt/${v.secret.secretName}`] : [])),
    ).toEqual([main.ssh.hostKey, main.ssh.gatewayClientKey]);
    expect(JSON.stringify(gateway)).not.toContain('orchestrator-key');
    const mounts = (
      c as unknown as { volumeMounts: { name: string; mountPath: string }[] }
    ).volumeMounts.map((m) => m.mountPath);
    expect(mounts.sort()).toEqual([
      '/etc/labvirt/keys/client',
      '/etc/labvirt/keys/host',
      '/etc/labvirt/labvirt.yaml',
      '/tmp',
    ]);
    // The orchestrator makes the client key's Secret (it installs its public half at each claim).
    expect(main.ssh.gatewayClientKey).toBe('secret:labvirt/labvirt-gateway-client-key');
  });

  it("writes a configuration labvirt accepts, whose gateway labels and namespace are the pods' own", () => {
    const redisAuth = mustFind(objs, 'Secret', 'labvirt-redis-auth') as Obj & {
      data: Record<string, string>;
    };
    const url = Buffer.from(redisAuth.data['redis-url']!, 'base64').toString();
    const password = Buffer.from(redisAuth.data.password!, 'base64').toString();
    expect(password).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(url).toBe(`redis://:${password}@labvirt-redis:6379`);
    const config = effectiveConfig(objs, { LABVIRT_REDIS_URL: url });
    expect(config.api.host).toBe('0.0.0.0');
    expect(config.redis.url).toBe(url);
    expect(JSON.stringify(objs.filter((o) => o.kind === 'ConfigMap'))).not.toContain(password);
    expect(config.network.gatewayNamespace).toBe('labvirt');
    // Env NetworkPolicies admit SSH from pods with these labels: the orchestrator's and the gateway's.
    for (const name of ['labvirt', 'labvirt-gateway']) {
      const pod = podTemplate(mustFind(objs, 'Deployment', name));
      expect(
        selectorMatches({ matchLabels: config.network.gatewayPodLabels }, pod.metadata.labels),
      ).toBe(true);
      expect(
        pod.spec.containers[0]!.env!.find((e) => e.name === 'LABVIRT_REDIS_URL')?.valueFrom
          ?.secretKeyRef,
      ).toEqual({ name: 'labvirt-redis-auth', key: 'redis-url' });
    }
    expect(config.ssh.hostKey).toBe('secret:labvirt/labvirt-gateway-host-key');
    expect(config.ssh.orchestratorKey).toBe('secret:labvirt/labvirt-orchestrator-key');
  });

  it('serves the SSH gateway as a LoadBalancer and the API as a ClusterIP Service, each selecting its own pods only', () => {
    const main = podTemplate(mustFind(objs, 'Deployment', 'labvirt'));
    const gateway = podTemplate(mustFind(objs, 'Deployment', 'labvirt-gateway'));
    const ssh = mustFind(objs, 'Service', 'labvirt-ssh').spec as Record<string, unknown>;
    const api = mustFind(objs, 'Service', 'labvirt').spec as Record<string, unknown>;
    expect(ssh).toMatchObject({ type: 'LoadBalancer', ports: [{ port: 22, targetPort: 'ssh' }] });
    expect(api).toMatchObject({ type: 'ClusterIP', ports: [{ port: 8080, targetPort: 'api' }] });
    const selects = (s: Record<string, unknown>, pod: PodTemplate) =>
      selectorMatches({ matchLabels: s.selector as Record<string, string> }, pod.metadata.labels);
    expect([selects(ssh, gateway), selects(ssh, main)]).toEqual([true, false]);
    expect([selects(api, main), selects(api, gateway)]).toEqual([true, false]);
  });

  it('keeps secrets out of the ConfigMap: the API token comes from the Secret', () => {
    const secret = mustFind(objs, 'Secret', 'labvirt') as Obj & { data: Record<string, string> };
    expect(Buffer.from(secret.data.LABVIRT_API_TOKEN!, 'base64').toString()).toMatch(
      /^[A-Za-z0-9]{40}$/,
    );
    const env = podTemplate(mustFind(objs, 'Deployment', 'labvirt')).spec.containers[0]!.env!;
    expect(env.find((e) => e.name === 'LABVIRT_API_TOKEN')?.valueFrom?.secretKeyRef).toEqual({
      name: 'labvirt',
      key: 'LABVIRT_API_TOKEN',
    });
    const cm = JSON.stringify(mustFind(objs, 'ConfigMap'));
    expect(cm).not.toContain(Buffer.from(secret.data.LABVIRT_API_TOKEN!, 'base64').toString());
  });

  it("opens labvirt's namespace only where it serves: Redis to labvirt's pods alone, the API and SSH ports", () => {
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy');
    const podOf = (kind: string, name: string) => {
      const pod = podTemplate(mustFind(objs, kind, name));
      return {
        namespace: 'labvirt',
        namespaceLabels: { 'kubernetes.io/metadata.name': 'labvirt' },
        podLabels: pod.metadata.labels,
        namedPorts: Object.fromEntries(
          (pod.spec.containers[0]!.ports ?? []).map((p) => [p.name, { port: p.containerPort }]),
        ),
      };
    };
    const main = podOf('Deployment', 'labvirt');
    const gateway = podOf('Deployment', 'labvirt-gateway');
    const redis = podOf('StatefulSet', 'labvirt-redis');
    const elsewhere = {
      namespace: 'team-a',
      namespaceLabels: { 'kubernetes.io/metadata.name': 'team-a' },
      podLabels: { app: 'curious' },
    };
    const student = { ip: '203.0.113.9' };
    const reach = (from: object, to: object, port: number) =>
      evaluateNetworkPolicies(policies, { from: from as never, to: to as never, port }).allowed;
    // Redis: labvirt's pods only.
    expect([reach(main, redis, 6379), reach(gateway, redis, 6379)]).toEqual([true, true]);
    expect([reach(elsewhere, redis, 6379), reach(student, redis, 6379)]).toEqual([false, false]);
    // The API and the gateway: their own port, from anywhere; nothing else.
    expect([reach(elsewhere, main, 8080), reach(student, gateway, 2222)]).toEqual([true, true]);
    expect([reach(student, main, 2222), reach(student, gateway, 8080)]).toEqual([false, false]);
    expect(reach(elsewhere, main, 9229)).toBe(false);
  });

  it('runs the bundled Redis with a password, which its probe uses too', () => {
    const c = podTemplate(mustFind(objs, 'StatefulSet', 'labvirt-redis')).spec.containers[0]!;
    expect(c.args!.slice(0, 2)).toEqual(['--requirepass', '$(REDIS_PASSWORD)']);
    for (const name of ['REDIS_PASSWORD', 'REDISCLI_AUTH'])
      expect(c.env!.find((e) => e.name === name)?.valueFrom?.secretKeyRef).toEqual({
        name: 'labvirt-redis-auth',
        key: 'password',
      });
  });

  it('bundles one Redis with a persistent volume, append-only and noeviction', () => {
    const sts = mustFind(objs, 'StatefulSet', 'labvirt-redis');
    const spec = sts.spec as {
      replicas: number;
      volumeClaimTemplates: { spec: { resources: { requests: { storage: string } } } }[];
    };
    expect(spec.replicas).toBe(1);
    expect(spec.volumeClaimTemplates[0]!.spec.resources.requests.storage).toBe('2Gi');
    const args = podTemplate(sts).spec.containers[0]!.args!.join(' ');
    expect(args).toContain('--appendonly yes');
    expect(args).toContain('--maxmemory-policy noeviction');
    const svc = mustFind(objs, 'Service', 'labvirt-redis').spec as {
      selector: Record<string, string>;
    };
    expect(selectorMatches({ matchLabels: svc.selector }, podTemplate(sts).metadata.labels)).toBe(
      true,
    );
  });

  it("grants exactly the calls labvirt makes (src/kube/permissions.ts), and doctor's reads apart", () => {
    const rules = (kind: string, name: string) =>
      (mustFind(objs, kind, name) as Obj & { rules: Rule[] }).rules;
    expect(grants(rules('ClusterRole', 'labvirt'))).toEqual(listed('cluster', 'labvirt-env'));
    expect(grants(rules('ClusterRole', 'labvirt-env'))).toEqual(listed('env', 'labvirt-env'));
    expect(grants(rules('Role', 'labvirt-keys'))).toEqual(listed('own', 'labvirt-env'));
    expect(mustFind(objs, 'Role', 'labvirt-keys').metadata.namespace).toBe('labvirt');
    // No Secret anywhere but in env Namespaces (bound there by labvirt) and its own.
    expect(grants(rules('ClusterRole', 'labvirt')).filter((g) => g.includes('secrets'))).toEqual(
      [],
    );
    expect(effectiveConfig(objs).kube.envClusterRole).toBe('labvirt-env');
    const doctorCluster = mustFind(objs, 'ClusterRole', 'labvirt-doctor') as Obj & {
      rules: Rule[];
    };
    const doctorRole = mustFind(objs, 'Role', 'labvirt-doctor') as Obj & { rules: Rule[] };
    expect(doctorRole.metadata.namespace).toBe('kubevirt');
    expect([...grants(doctorCluster.rules), ...grants(doctorRole.rules)].sort()).toEqual(
      DOCTOR_PERMISSIONS.map(permissionKey).sort(),
    );
    // `doctor --check-images`: probe pods in labvirt's own namespace only.
    const imagesRole = mustFind(objs, 'Role', 'labvirt-doctor-images') as Obj & {
      rules: Rule[];
    };
    expect(imagesRole.metadata.namespace).toBe('labvirt');
    expect(grants(imagesRole.rules)).toEqual(DOCTOR_IMAGE_PERMISSIONS.map(permissionKey).sort());
    const imagesBinding = mustFind(objs, 'RoleBinding', 'labvirt-doctor-images') as Obj & {
      subjects: { kind: string; name: string; namespace: string }[];
    };
    expect(imagesBinding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'labvirt', namespace: 'labvirt' },
    ]);
    for (const binding of ['labvirt', 'labvirt-doctor']) {
      const b = mustFind(objs, 'ClusterRoleBinding', binding) as Obj & {
        subjects: { kind: string; name: string; namespace: string }[];
      };
      expect(b.subjects).toEqual([
        { kind: 'ServiceAccount', name: 'labvirt', namespace: 'labvirt' },
      ]);
    }
  });
});

describe('deploy/helm/labvirt with non-default values', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'labvirt-chart-values-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('external Redis by URL, a NodePort gateway, an existing Secret, a ServiceMonitor: all valid', async () => {
    const values = join(dir, 'values.yaml');
    writeFileSync(
      values,
      [
        'replicaCount: 3',
        'image: { repository: registry.example.org/labvirt, tag: "1.2.3" }',
        'redis: { url: "rediss://redis.shared.svc:6380/2" }',
        'gateway: { service: { type: NodePort, nodePort: 30022 } }',
        'secrets: { existingSecret: labvirt-credentials }',
        'metrics: { serviceMonitor: { enabled: true, labels: { release: prometheus } } }',
        'config:',
        '  ssh: { publicHost: labs.school.example }',
        '  flavors:',
        '    v1.31-3node: { kubernetesVersion: "1.31", nodes: 3, minWarm: 4, maxTotal: 20 }',
        '  logLevel: debug',
        '  pool: { shutdownGraceSeconds: 120 }',
      ].join('\n'),
    );
    const objs = await render([], [values]);
    expect(problems(objs)).toEqual([]);
    expect(find(objs, 'StatefulSet')).toBeUndefined();
    expect(find(objs, 'Secret')).toBeUndefined();
    const config = effectiveConfig(objs);
    expect(config.redis.url).toBe('rediss://redis.shared.svc:6380/2');
    expect(config.ssh.publicHost).toBe('labs.school.example');
    expect(config.logLevel).toBe('debug');
    expect(Object.keys(config.flavors)).toContain('v1.31-3node');
    expect(config.pool.shutdownGraceSeconds).toBe(120);
    expectRoomToHandBack(objs);
    const deployment = mustFind(objs, 'Deployment', 'labvirt');
    expect((deployment.spec as { replicas: number }).replicas).toBe(3);
    const c = podTemplate(deployment).spec.containers[0]!;
    expect(c).toMatchObject({ image: 'registry.example.org/labvirt:1.2.3' });
    expect(
      c.env!.filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.valueFrom!.secretKeyRef!.name),
    ).toEqual(['labvirt-credentials', 'labvirt-credentials', 'labvirt-credentials']);
    expect(mustFind(objs, 'Service', 'labvirt-ssh').spec).toMatchObject({
      type: 'NodePort',
      ports: [{ port: 22, targetPort: 'ssh', nodePort: 30022 }],
    });
    const sm = mustFind(objs, 'ServiceMonitor') as Obj & {
      spec: { selector: { matchLabels: Record<string, string> } };
    };
    expect(sm.metadata.labels).toMatchObject({ release: 'prometheus' });
    // It scrapes the API Service only (the SSH one has no metrics port).
    expect(
      objs
        .filter((o) => o.kind === 'Service')
        .filter((s) => selectorMatches(sm.spec.selector, s.metadata.labels ?? {}))
        .map((s) => s.metadata.name),
    ).toEqual(['labvirt']);
  }, 60_000);

  it('a Redis URL with a password comes from a Secret, never the ConfigMap', async () => {
    const objs = await render(['redis.urlSecret.name=redis-credentials', 'rbac.doctor=false']);
    expect(problems(objs)).toEqual([]);
    expect(find(objs, 'StatefulSet')).toBeUndefined();
    // Without doctor's grants: labvirt's own roles only.
    expect(objs.filter((o) => o.kind === 'Role').map((o) => o.metadata.name)).toEqual([
      'labvirt-keys',
    ]);
    expect(objs.filter((o) => o.kind === 'ClusterRole').map((o) => o.metadata.name)).toEqual([
      'labvirt',
      'labvirt-env',
    ]);
    for (const name of ['labvirt', 'labvirt-gateway']) {
      const env = podTemplate(mustFind(objs, 'Deployment', name)).spec.containers[0]!.env!;
      expect(env.find((e) => e.name === 'LABVIRT_REDIS_URL')?.valueFrom?.secretKeyRef).toEqual({
        name: 'redis-credentials',
        key: 'redis-url',
      });
    }
    const cm = mustFind(objs, 'ConfigMap', 'labvirt') as Obj & { data: Record<string, string> };
    expect((parse(cm.data['labvirt.yaml']!) as { redis?: unknown }).redis).toBeUndefined();
    // What the pod ends up with: the variable wins over the built-in default.
    expect(
      effectiveConfig(objs, { LABVIRT_REDIS_URL: 'redis://:pw@redis.example:6379' }).redis.url,
    ).toBe('redis://:pw@redis.example:6379');
  }, 60_000);

  it('the bundled Redis without persistence, another release name and namespace', async () => {
    const yaml = await helmTemplate(CHART, {
      release: 'labs',
      namespace: 'training',
      set: ['redis.bundled.persistence.enabled=false', 'serviceAccount.name=labs-sa'],
    });
    const objs = parseAllDocuments(yaml)
      .map((d) => d.toJS() as Obj | null)
      .filter((o): o is Obj => o !== null);
    expect(problems(objs)).toEqual([]);
    const auth = mustFind(objs, 'Secret', 'labs-labvirt-redis-auth') as Obj & {
      data: Record<string, string>;
    };
    const url = Buffer.from(auth.data['redis-url']!, 'base64').toString();
    expect(url).toMatch(/^redis:\/\/:[A-Za-z0-9]{40}@labs-labvirt-redis:6379$/);
    const config = effectiveConfig(objs, { LABVIRT_REDIS_URL: url }, 'labs-labvirt');
    expect(config.network.gatewayNamespace).toBe('training');
    expect(config.ssh.hostKey).toBe('secret:training/labs-labvirt-gateway-host-key');
    const sts = mustFind(objs, 'StatefulSet');
    expect((sts.spec as Record<string, unknown>).volumeClaimTemplates).toBeUndefined();
    const binding = mustFind(objs, 'ClusterRoleBinding', 'labs-labvirt') as Obj & {
      subjects: unknown[];
    };
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'labs-sa', namespace: 'training' },
    ]);
  }, 60_000);

  it('refuses a gateway Service type other than LoadBalancer or NodePort, saying so', async () => {
    await expect(render(['gateway.service.type=ClusterIP'])).rejects.toThrow(
      /gateway.service.type must be LoadBalancer or NodePort, not "ClusterIP"/,
    );
  }, 60_000);
});
