import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/index.js';
import { startSim } from '../../src/sim/index.js';
import {
  HostCluster,
  cidrContains,
  evaluateNetworkPolicies,
  selectorMatches,
  type Connection,
  type KubeObject,
  type NetworkPolicyLike,
  type PodEndpoint,
} from '../../src/kube/index.js';
import { byKind, renderWith } from './helpers.js';

function pod(
  namespace: string,
  podLabels: Record<string, string>,
  ip: string,
  extra: Partial<PodEndpoint> = {},
): PodEndpoint {
  return {
    namespace,
    namespaceLabels: { 'kubernetes.io/metadata.name': namespace },
    podLabels,
    ip,
    ...extra,
  };
}

function np(namespace: string, name: string, spec: NetworkPolicyLike['spec']): NetworkPolicyLike {
  return { metadata: { namespace, name }, spec };
}

const allowed = (policies: NetworkPolicyLike[], c: Connection) =>
  evaluateNetworkPolicies(policies, c).allowed;

describe('evaluateNetworkPolicies: Kubernetes semantics', () => {
  const web = pod('shop', { app: 'web' }, '10.1.0.10', { namedPorts: { http: { port: 8080 } } });
  const db = pod('shop', { app: 'db' }, '10.1.0.20');
  const other = pod('other', { app: 'web' }, '10.2.0.10');

  it('allows everything when no policy selects either end', () => {
    const d = evaluateNetworkPolicies([], { from: web, to: db, port: 5432 });
    expect(d.allowed).toBe(true);
    expect(d.reason).toContain('not isolated');
  });

  it('isolates a selected pod for ingress only when the policy has no egress', () => {
    const deny = [np('shop', 'deny-db', { podSelector: { matchLabels: { app: 'db' } } })];
    expect(allowed(deny, { from: web, to: db, port: 5432 })).toBe(false);
    // db is not isolated for egress: it may still call out.
    expect(allowed(deny, { from: db, to: web, port: 8080 })).toBe(true);
    const d = evaluateNetworkPolicies(deny, { from: web, to: db, port: 5432 });
    expect(d.reason).toMatch(/ingress of shop\/\{app=db\} denied: isolated by deny-db/);
  });

  it('infers Egress from egress rules when policyTypes is absent', () => {
    const p = [
      np('shop', 'web-out', {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ ports: [{ port: 53, protocol: 'UDP' }] }],
      }),
    ];
    expect(allowed(p, { from: web, to: { ip: '1.1.1.1' }, port: 53, protocol: 'UDP' })).toBe(true);
    expect(allowed(p, { from: web, to: { ip: '1.1.1.1' }, port: 443 })).toBe(false);
    // ...and Ingress always: nothing may reach web now.
    expect(allowed(p, { from: db, to: web, port: 8080 })).toBe(false);
  });

  it('matches a podSelector peer in the policy’s own namespace only', () => {
    const p = [
      np('shop', 'db-from-web', {
        podSelector: { matchLabels: { app: 'db' } },
        policyTypes: ['Ingress'],
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
      }),
    ];
    expect(allowed(p, { from: web, to: db, port: 5432 })).toBe(true);
    expect(allowed(p, { from: other, to: db, port: 5432 })).toBe(false);
    expect(allowed(p, { from: { ip: '10.1.0.10' }, to: db, port: 5432 })).toBe(false);
  });

  it('ANDs namespaceSelector and podSelector in one peer, ORs separate peers', () => {
    const and = [
      np('shop', 'and', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'other' } },
                podSelector: { matchLabels: { app: 'api' } },
              },
            ],
          },
        ],
      }),
    ];
    expect(allowed(and, { from: other, to: db, port: 5432 })).toBe(false); // app=web, not api
    expect(
      allowed(and, { from: pod('other', { app: 'api' }, '10.2.0.11'), to: db, port: 5432 }),
    ).toBe(true);
    const or = [
      np('shop', 'or', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          {
            from: [
              { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'other' } } },
              { podSelector: { matchLabels: { app: 'api' } } },
            ],
          },
        ],
      }),
    ];
    expect(allowed(or, { from: other, to: db, port: 5432 })).toBe(true);
    expect(allowed(or, { from: web, to: db, port: 5432 })).toBe(false);
    // An empty namespaceSelector means every namespace.
    const anyNs = [
      np('shop', 'any', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] }),
    ];
    expect(allowed(anyNs, { from: other, to: db, port: 1 })).toBe(true);
    expect(allowed(anyNs, { from: { ip: '8.8.8.8' }, to: db, port: 1 })).toBe(false);
  });

  it('matches ipBlock cidr minus except', () => {
    const p = [
      np('shop', 'out', {
        podSelector: {},
        policyTypes: ['Egress'],
        egress: [
          { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '192.168.0.0/16'] } }] },
        ],
      }),
    ];
    expect(allowed(p, { from: web, to: { ip: '8.8.8.8' }, port: 443 })).toBe(true);
    expect(allowed(p, { from: web, to: { ip: '10.9.9.9' }, port: 443 })).toBe(false);
    expect(allowed(p, { from: web, to: { ip: '192.168.1.1' }, port: 443 })).toBe(false);
    expect(allowed(p, { from: web, to: { ip: '172.16.0.1' }, port: 443 })).toBe(true);
    expect(allowed(p, { from: web, to: db, port: 5432 })).toBe(false); // pod IP 10.1.0.20 is excepted
  });

  it('handles port ranges, named ports, protocols and protocol-only ports', () => {
    const p = [
      np('shop', 'ports', {
        podSelector: { matchLabels: { app: 'web' } },
        ingress: [
          { ports: [{ port: 30000, endPort: 30010 }, { port: 'http' }, { protocol: 'UDP' }] },
        ],
      }),
    ];
    expect(allowed(p, { from: db, to: web, port: 30005 })).toBe(true);
    expect(allowed(p, { from: db, to: web, port: 30011 })).toBe(false);
    expect(allowed(p, { from: db, to: web, port: 8080 })).toBe(true); // named port http
    expect(allowed(p, { from: db, to: web, port: 8081 })).toBe(false);
    expect(allowed(p, { from: db, to: web, port: 9999, protocol: 'UDP' })).toBe(true);
    expect(allowed(p, { from: db, to: web, port: 9999, protocol: 'SCTP' })).toBe(false);
  });

  it('needs both the source’s egress and the destination’s ingress', () => {
    const p = [
      np('shop', 'web-egress-db', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } } }] }],
      }),
      np('shop', 'db-closed', {
        podSelector: { matchLabels: { app: 'db' } },
        policyTypes: ['Ingress'],
      }),
    ];
    const d = evaluateNetworkPolicies(p, { from: web, to: db, port: 5432 });
    expect(d.allowed).toBe(false);
    expect(d.reason).toMatch(/^ingress of shop/);
    expect(evaluateNetworkPolicies(p, { from: web, to: other, port: 80 }).reason).toMatch(
      /^egress of shop/,
    );
  });

  it('ignores policies of other namespaces', () => {
    const p = [np('other', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })];
    expect(allowed(p, { from: web, to: db, port: 1 })).toBe(true);
  });

  it('implements label selector expressions', () => {
    const labels = { app: 'web', tier: 'front' };
    expect(selectorMatches({}, labels)).toBe(true);
    expect(
      selectorMatches(
        { matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'back'] }] },
        labels,
      ),
    ).toBe(true);
    expect(
      selectorMatches(
        { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['front'] }] },
        labels,
      ),
    ).toBe(false);
    expect(
      selectorMatches(
        { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] },
        labels,
      ),
    ).toBe(true);
    expect(
      selectorMatches({ matchExpressions: [{ key: 'app', operator: 'Exists' }] }, labels),
    ).toBe(true);
    expect(
      selectorMatches({ matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, labels),
    ).toBe(false);
    expect(
      selectorMatches(
        {
          matchLabels: { app: 'web' },
          matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }],
        },
        labels,
      ),
    ).toBe(false);
  });

  it('computes CIDR membership', () => {
    expect(cidrContains('0.0.0.0/0', '203.0.113.9')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '10.255.255.255')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '11.0.0.0')).toBe(false);
    expect(cidrContains('172.16.0.0/12', '172.31.255.1')).toBe(true);
    expect(cidrContains('172.16.0.0/12', '172.32.0.1')).toBe(false);
    expect(cidrContains('8.8.8.8/32', '8.8.8.8')).toBe(true);
    expect(cidrContains('8.8.8.8/32', '8.8.8.9')).toBe(false);
    expect(cidrContains('10.0.0.0/8', 'fd00::1')).toBe(false);
  });
});

/** The launcher pod of a rendered VM: the template's labels plus KubeVirt's own. */
function launcher(objects: KubeObject[], vm: string, ip: string): PodEndpoint {
  const v = byKind(objects, 'VirtualMachine').find((x) => x.metadata.name === vm);
  return pod(
    v.metadata.namespace,
    {
      ...v.spec.template.metadata.labels,
      'kubevirt.io': 'virt-launcher',
      'vm.kubevirt.io/name': vm,
    },
    ip,
  );
}

async function world(mode: 'gateway' | 'nodeport', extra: Record<string, unknown> = {}) {
  const a = await renderWith('v1.30-3node', { ssh: { mode }, ...extra }, 'aaaaaaaa');
  const b = await renderWith('v1.30-3node', { ssh: { mode }, ...extra }, 'bbbbbbbb');
  const policies = [
    ...byKind(a, 'NetworkPolicy'),
    ...byKind(b, 'NetworkPolicy'),
  ] as NetworkPolicyLike[];
  return {
    policies,
    aCp: launcher(a, 'control-plane', '10.244.1.10'),
    aW1: launcher(a, 'worker-1', '10.244.1.11'),
    bCp: launcher(b, 'control-plane', '10.244.2.10'),
    gateway: pod('labvirt', { 'app.kubernetes.io/name': 'labvirt' }, '10.244.0.5'),
    kubeDns: pod('kube-system', { 'k8s-app': 'kube-dns' }, '10.244.0.2'),
    virtApi: pod('kubevirt', { 'kubevirt.io': 'virt-api' }, '10.244.0.7'),
  };
}

describe('env isolation, evaluated on the rendered NetworkPolicies', () => {
  it('lets an env’s VMs talk to each other on any port and protocol', async () => {
    const w = await world('gateway');
    for (const [port, protocol] of [
      [6443, 'TCP'],
      [10250, 'TCP'],
      [22, 'TCP'],
      [4789, 'UDP'],
      [30080, 'TCP'],
    ] as const) {
      expect(allowed(w.policies, { from: w.aW1, to: w.aCp, port, protocol })).toBe(true);
      expect(allowed(w.policies, { from: w.aCp, to: w.aW1, port, protocol })).toBe(true);
    }
  });

  it('keeps other envs out, both ways', async () => {
    const w = await world('gateway');
    for (const port of [22, 6443, 10250]) {
      const inbound = evaluateNetworkPolicies(w.policies, { from: w.bCp, to: w.aCp, port });
      expect(inbound.allowed).toBe(false);
      expect(allowed(w.policies, { from: w.aCp, to: w.bCp, port })).toBe(false);
    }
  });

  it('lets labvirt’s gateway reach port 22 of every VM, and nothing else', async () => {
    const w = await world('gateway');
    expect(allowed(w.policies, { from: w.gateway, to: w.aCp, port: 22 })).toBe(true);
    expect(allowed(w.policies, { from: w.gateway, to: w.aW1, port: 22 })).toBe(true);
    expect(allowed(w.policies, { from: w.gateway, to: w.aCp, port: 6443 })).toBe(false);
    // A pod with the gateway's labels in another namespace is not the gateway.
    const impostor = pod('default', { 'app.kubernetes.io/name': 'labvirt' }, '10.244.9.9');
    expect(allowed(w.policies, { from: impostor, to: w.aCp, port: 22 })).toBe(false);
  });

  it('denies SSH from the internet in gateway mode', async () => {
    const w = await world('gateway');
    expect(allowed(w.policies, { from: { ip: '203.0.113.7' }, to: w.aCp, port: 22 })).toBe(false);
    expect(allowed(w.policies, { from: { ip: '203.0.113.7' }, to: w.aW1, port: 22 })).toBe(false);
  });

  it('allows SSH from anywhere to the control plane only in nodeport mode', async () => {
    const w = await world('nodeport');
    expect(allowed(w.policies, { from: { ip: '203.0.113.7' }, to: w.aCp, port: 22 })).toBe(true);
    expect(allowed(w.policies, { from: { ip: '203.0.113.7' }, to: w.aW1, port: 22 })).toBe(false);
    expect(allowed(w.policies, { from: { ip: '203.0.113.7' }, to: w.aCp, port: 6443 })).toBe(false);
    // labvirt's executor still reaches the workers.
    expect(allowed(w.policies, { from: w.gateway, to: w.aW1, port: 22 })).toBe(true);
  });

  it('lets the VMs use DNS and the internet but not private ranges or cloud metadata', async () => {
    const w = await world('gateway');
    expect(allowed(w.policies, { from: w.aCp, to: { ip: '8.8.8.8' }, port: 443 })).toBe(true);
    expect(allowed(w.policies, { from: w.aW1, to: { ip: '151.101.1.1' }, port: 80 })).toBe(true);
    expect(allowed(w.policies, { from: w.aCp, to: { ip: '10.0.0.5' }, port: 443 })).toBe(false);
    expect(allowed(w.policies, { from: w.aCp, to: { ip: '192.168.1.1' }, port: 22 })).toBe(false);
    expect(allowed(w.policies, { from: w.aCp, to: { ip: '169.254.169.254' }, port: 80 })).toBe(
      false,
    );
    // Azure's platform address is public, yet no place for a student: denied by default.
    expect(allowed(w.policies, { from: w.aCp, to: { ip: '168.63.129.16' }, port: 80 })).toBe(false);
    expect(allowed(w.policies, { from: w.aCp, to: { ip: '168.63.129.17' }, port: 80 })).toBe(true);
    expect(allowed(w.policies, { from: w.aCp, to: w.kubeDns, port: 53, protocol: 'UDP' })).toBe(
      true,
    );
    expect(allowed(w.policies, { from: w.aCp, to: w.kubeDns, port: 53, protocol: 'TCP' })).toBe(
      true,
    );
    expect(allowed(w.policies, { from: w.aCp, to: w.kubeDns, port: 9153 })).toBe(false);
    expect(allowed(w.policies, { from: w.aCp, to: w.gateway, port: 2222 })).toBe(false);
  });

  it('admits virt-api to port 22 only when allowVirtctlSsh is on', async () => {
    const off = await world('gateway');
    expect(allowed(off.policies, { from: off.virtApi, to: off.aCp, port: 22 })).toBe(false);
    const on = await world('gateway', { network: { allowVirtctlSsh: true } });
    expect(allowed(on.policies, { from: on.virtApi, to: on.aCp, port: 22 })).toBe(true);
    expect(allowed(on.policies, { from: on.virtApi, to: on.aCp, port: 6443 })).toBe(false);
  });
});

/**
 * The five policies an env had before they were folded into two (issue #12:
 * each policy is one API write per env), as they were rendered then, for the
 * env `aaaaaaaa` with the default network settings.
 */
function previousFivePolicies(opts: { nodeport: boolean; virtctl: boolean }): NetworkPolicyLike[] {
  const ns = 'lab-aaaaaaaa';
  const envPods = { matchLabels: { 'labvirt.io/env': 'aaaaaaaa' } };
  const ssh = [{ protocol: 'TCP', port: 22 }];
  const sshFrom: Record<string, unknown>[] = [
    {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'labvirt' } },
      podSelector: { matchLabels: { 'app.kubernetes.io/name': 'labvirt' } },
    },
  ];
  if (opts.virtctl)
    sshFrom.push({
      namespaceSelector: {},
      podSelector: { matchLabels: { 'kubevirt.io': 'virt-api' } },
    });
  const dnsPorts = [
    { protocol: 'UDP', port: 53 },
    { protocol: 'TCP', port: 53 },
  ];
  const policies = [
    np(ns, 'default-deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    np(ns, 'allow-within-env', {
      podSelector: envPods,
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ podSelector: envPods }] }],
      egress: [{ to: [{ podSelector: envPods }] }],
    }),
    np(ns, 'allow-dns', {
      podSelector: envPods,
      policyTypes: ['Egress'],
      egress: [
        {
          to: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
              podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
            },
          ],
          ports: dnsPorts,
        },
      ],
    }),
    np(ns, 'allow-ssh-from-labvirt', {
      podSelector: envPods,
      policyTypes: ['Ingress'],
      ingress: [{ from: sshFrom, ports: ssh }],
    }),
  ] as NetworkPolicyLike[];
  if (opts.nodeport)
    policies.push(
      np(ns, 'allow-ssh-nodeport', {
        podSelector: {
          matchLabels: { 'labvirt.io/env': 'aaaaaaaa', 'labvirt.io/node': 'control-plane' },
        },
        policyTypes: ['Ingress'],
        ingress: [{ ports: ssh }],
      }),
    );
  return policies;
}

describe('env isolation: two policies decide as the five they replaced', () => {
  it.each([
    { mode: 'gateway' as const, virtctl: false },
    { mode: 'gateway' as const, virtctl: true },
    { mode: 'nodeport' as const, virtctl: false },
  ])(
    'every connection between the env, its neighbours and the world ($mode, virtctl $virtctl)',
    async ({ mode, virtctl }) => {
      const rendered = await renderWith(
        'v1.30-3node',
        { ssh: { mode }, network: { allowVirtctlSsh: virtctl } },
        'aaaaaaaa',
      );
      const now = byKind(rendered, 'NetworkPolicy') as NetworkPolicyLike[];
      expect(now.length).toBeLessThanOrEqual(mode === 'nodeport' ? 3 : 2);
      // The egress-to-internet rule of the old set, taken from the rendered one
      // (its except list is the configured deniedEgressCidrs).
      const internet = now
        .flatMap((p) => p.spec?.egress ?? [])
        .find((r) => r.to?.some((peer) => peer.ipBlock?.cidr === '0.0.0.0/0'));
      expect(internet).toBeDefined();
      const before = [
        ...previousFivePolicies({ nodeport: mode === 'nodeport', virtctl }),
        np('lab-aaaaaaaa', 'allow-internet', {
          podSelector: { matchLabels: { 'labvirt.io/env': 'aaaaaaaa' } },
          policyTypes: ['Egress'],
          egress: [internet!],
        }),
      ];
      const w = await world(mode, { network: { allowVirtctlSsh: virtctl } });
      // A pod in the env's namespace that is none of its VMs (default-deny covers it).
      const stray = pod('lab-aaaaaaaa', { app: 'stray' }, '10.244.1.99');
      const endpoints: Record<string, PodEndpoint | { ip: string }> = {
        aCp: w.aCp,
        aW1: w.aW1,
        stray,
        bCp: w.bCp,
        gateway: w.gateway,
        kubeDns: w.kubeDns,
        virtApi: w.virtApi,
        impostor: pod('default', { 'app.kubernetes.io/name': 'labvirt' }, '10.244.9.9'),
        internet: { ip: '203.0.113.7' },
        privateNet: { ip: '10.0.0.5' },
        metadata: { ip: '169.254.169.254' },
      };
      const ports = [
        [22, 'TCP'],
        [53, 'UDP'],
        [53, 'TCP'],
        [443, 'TCP'],
        [6443, 'TCP'],
        [4789, 'UDP'],
        [30080, 'TCP'],
      ] as const;
      let compared = 0;
      for (const [fromName, from] of Object.entries(endpoints))
        for (const [toName, to] of Object.entries(endpoints)) {
          if (fromName === toName) continue;
          for (const [port, protocol] of ports) {
            const c = { from, to, port, protocol } as Connection;
            expect(allowed(now, c), `${fromName} → ${toName}:${port}/${protocol}`).toBe(
              allowed(before, c),
            );
            compared++;
          }
        }
      expect(compared).toBe(11 * 10 * ports.length);
    },
  );
});

describe('env isolation as the host cluster stores it', () => {
  it('keeps every ingress peer on the way through client-node (its model names `from` `_from`)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labvirt-netpol-'));
    const sim = await startSim({ dir, speed: 1000, guests: false });
    try {
      const kc = new KubeConfig();
      kc.loadFromFile(sim.kubeconfigPath);
      const host = new HostCluster(kc, { logger: silentLogger(), quotaRetryMs: 20 });
      const objects = await renderWith('v1.30-3node', {}, 'stored01');
      await host.createAll(objects);
      const stored = (
        await kc
          .makeApiClient(NetworkingV1Api)
          .listNamespacedNetworkPolicy({ namespace: 'lab-stored01' })
      ).items;
      const asManifest = (p: (typeof stored)[number]) =>
        (p.spec?.ingress ?? []).map(({ _from, ports }) => ({
          ...(_from ? { from: JSON.parse(JSON.stringify(_from)) as unknown } : {}),
          ...(ports ? { ports: JSON.parse(JSON.stringify(ports)) as unknown } : {}),
        }));
      for (const rendered of byKind(objects, 'NetworkPolicy')) {
        const back = stored.find((p) => p.metadata?.name === rendered.metadata.name)!;
        expect(asManifest(back), rendered.metadata.name).toEqual(rendered.spec.ingress ?? []);
      }
      // So another env's VM stays out of this one, as rendered.
      const policies = stored.map((p) => ({
        metadata: p.metadata,
        spec: { ...p.spec, ingress: asManifest(p) },
      })) as NetworkPolicyLike[];
      const vm = pod('lab-stored01', { 'labvirt.io/env': 'stored01' }, '10.244.0.5');
      expect(
        allowed(policies, { from: { ip: '10.250.0.9' }, to: vm, port: 6443 }),
        'a host pod outside the env',
      ).toBe(false);
    } finally {
      await sim.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
