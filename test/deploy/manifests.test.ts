import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { evaluateNetworkPolicies, selectorMatches, validateObject } from '../../src/kube/index.js';

const FILE = join(import.meta.dirname, '..', '..', 'deploy', 'labvirt.yaml');

interface Obj {
  kind: string;
  metadata: { name: string };
  [k: string]: unknown;
}
interface Pod {
  metadata: { labels: Record<string, string> };
  spec: {
    serviceAccountName?: string;
    automountServiceAccountToken?: boolean;
    containers: {
      args?: string[];
      ports?: { name: string; containerPort: number }[];
      envFrom?: { secretRef?: { name: string } }[];
    }[];
  };
}

const objs = parseAllDocuments(readFileSync(FILE, 'utf8'))
  .map((d) => d.toJS() as Obj | null)
  .filter((o): o is Obj => o !== null);
const find = (kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`deploy/labvirt.yaml has no ${kind} ${name}`);
  return o;
};
const podOf = (name: string) => (find('Deployment', name).spec as { template: Pod }).template;

describe('deploy/labvirt.yaml', () => {
  it('validates strictly', () => {
    expect(
      objs.flatMap((o) =>
        validateObject(o).map((p) => `${o.kind} ${o.metadata.name}: ${p.path}: ${p.message}`),
      ),
    ).toEqual([]);
  });

  it('runs the SSH gateway apart, under an account without a token, and Redis only with a password from a Secret', () => {
    const gateway = podOf('labvirt-gateway');
    expect(gateway.spec.serviceAccountName).toBe('labvirt-gateway');
    expect(gateway.spec.automountServiceAccountToken).toBe(false);
    expect(
      (find('ServiceAccount', 'labvirt-gateway') as Obj & { automountServiceAccountToken: boolean })
        .automountServiceAccountToken,
    ).toBe(false);
    expect(gateway.spec.containers[0]!.args!.slice(-2)).toEqual(['--roles', 'gateway']);
    // It mounts its host key and its client key, nothing else of labvirt's.
    const secrets = (
      gateway.spec as unknown as { volumes: { secret?: { secretName: string } }[] }
    ).volumes.flatMap((v) => (v.secret ? [v.secret.secretName] : []));
    expect(secrets.sort()).toEqual(['labvirt-gateway-client-key', 'labvirt-gateway-host-key']);
    const gatewayConfig = parse(
      (find('ConfigMap', 'labvirt-gateway-config') as Obj & { data: Record<string, string> }).data[
        'labvirt.yaml'
      ]!,
    ) as { ssh: Record<string, string> };
    expect(gatewayConfig.ssh.gatewayClientKey).toBe('/etc/labvirt/keys/client/ssh-privatekey');
    expect(gatewayConfig.ssh.orchestratorKey).toBeUndefined();
    expect(podOf('labvirt').spec.containers[0]!.args!.slice(-2)).toEqual([
      '--roles',
      'api,workers,scheduler,sync',
    ]);
    // No Redis URL in a ConfigMap: both read it from the Secret.
    for (const cm of objs.filter((o) => o.kind === 'ConfigMap'))
      expect(JSON.stringify(cm)).not.toContain('redis');
    for (const name of ['labvirt', 'labvirt-gateway'])
      expect(podOf(name).spec.containers[0]!.envFrom!.map((e) => e.secretRef?.name)).toContain(
        'labvirt-redis',
      );
    const ssh = find('Service', 'labvirt-ssh').spec as { selector: Record<string, string> };
    expect(selectorMatches({ matchLabels: ssh.selector }, gateway.metadata.labels)).toBe(true);
    expect(selectorMatches({ matchLabels: ssh.selector }, podOf('labvirt').metadata.labels)).toBe(
      false,
    );
  });

  it('opens only the API port of the orchestrator and the SSH port of the gateway', () => {
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy');
    const endpoint = (name: string) => {
      const pod = podOf(name);
      return {
        namespace: 'labvirt',
        namespaceLabels: { 'kubernetes.io/metadata.name': 'labvirt' },
        podLabels: pod.metadata.labels,
        namedPorts: Object.fromEntries(
          (pod.spec.containers[0]!.ports ?? []).map((p) => [p.name, { port: p.containerPort }]),
        ),
      };
    };
    const outside = { ip: '203.0.113.9' };
    const reach = (to: string, port: number) =>
      evaluateNetworkPolicies(policies, { from: outside, to: endpoint(to), port }).allowed;
    expect([reach('labvirt', 8080), reach('labvirt-gateway', 2222)]).toEqual([true, true]);
    expect([reach('labvirt', 2222), reach('labvirt-gateway', 8080)]).toEqual([false, false]);
  });
});
