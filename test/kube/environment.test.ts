/* eslint-disable @typescript-eslint/no-explicit-any -- rendered objects are inspected field by field */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  LABELS,
  assertValid,
  envNamespace,
  generateEnvSecrets,
  launcherMemoryMi,
  newEnvId,
  renderEnvironment,
  validateObject,
} from '../../src/kube/index.js';
import {
  ORCHESTRATOR_KEY,
  SCHEMAS_PRESENT,
  SCHEMAS_SKIP_REASON,
  byKind,
  configWith,
  named,
  renderWith,
  sharedSecrets,
  userDataOf,
} from './helpers.js';

const FLAVORS = Object.keys(configWith().flavors);
const MODES = ['gateway', 'nodeport'] as const;

describe.skipIf(!SCHEMAS_PRESENT)(
  `every configured flavor validates strictly${SCHEMAS_SKIP_REASON}`,
  () => {
    it('knows both default flavors', () => {
      expect(FLAVORS).toEqual(['v1.30-3node', 'v1.31-1node']);
    });
    for (const flavor of FLAVORS) {
      for (const mode of MODES) {
        it(`${flavor} in ${mode} mode`, async () => {
          const objects = await renderWith(flavor, { ssh: { mode } });
          expect(() => assertValid(objects)).not.toThrow();
          for (const o of objects) expect(validateObject(o)).toEqual([]);
        });
      }
    }
    it('a golden-image flavor with its own image and bigger VMs', async () => {
      const objects = await renderWith('v1.31-3node', {
        flavors: {
          'v1.31-3node': {
            kubernetesVersion: '1.31',
            nodes: 3,
            image: 'registry.example.org/golden/k8s:1.31',
            goldenImage: true,
          },
        },
        vm: {
          controlPlane: { cpus: 4, memory: '4Gi', cpuLimit: '2' },
          worker: { cpus: 2, memory: '2Gi', cpuLimit: '1500m' },
        },
      });
      assertValid(objects);
      const vm = named(objects, 'VirtualMachine', 'worker-2');
      expect(vm.spec.template.spec.domain).toMatchObject({
        cpu: { cores: 2 },
        memory: { guest: '2Gi' },
        resources: { limits: { cpu: '1500m' } },
      });
      expect(vm.spec.template.spec.volumes[0].containerDisk.image).toBe(
        'registry.example.org/golden/k8s:1.31',
      );
    });
  },
);

describe('the objects of one env', () => {
  it('come in creation order: Namespace first, isolation before the VMs, ResourceQuota last', async () => {
    const objects = await renderWith('v1.30-3node', { ssh: { mode: 'nodeport' } });
    const order = objects.map((o) => `${o.kind}/${o.metadata?.name}`);
    expect(order[0]).toBe('Namespace/lab-abcd1234');
    expect(order.at(-1)).toBe('ResourceQuota/env-quota');
    const first = (prefix: string) => order.findIndex((x) => x.startsWith(prefix));
    expect(first('NetworkPolicy/')).toBeLessThan(first('VirtualMachine/'));
    expect(first('LimitRange/')).toBeLessThan(first('VirtualMachine/'));
    expect(first('Secret/cloudinit')).toBeLessThan(first('VirtualMachine/'));
    expect(order.filter((x) => x.startsWith('ResourceQuota/'))).toHaveLength(1);
  });

  it('all carry the env, flavor and managed-by labels and live in the env namespace', async () => {
    const objects = await renderWith('v1.30-3node', { ssh: { mode: 'nodeport' } });
    for (const o of objects) {
      expect(o.metadata?.labels).toMatchObject({
        [LABELS.env]: 'abcd1234',
        [LABELS.flavor]: 'v1.30-3node',
        [LABELS.managedBy]: 'labvirt',
      });
      if (o.kind !== 'Namespace') expect(o.metadata?.namespace).toBe('lab-abcd1234');
    }
    const ns = named(objects, 'Namespace', 'lab-abcd1234');
    expect(ns.metadata.labels).toMatchObject({
      [LABELS.state]: 'provisioning',
      'pod-security.kubernetes.io/enforce': 'baseline',
    });
  });

  it('records the owner on the Namespace when given', async () => {
    const objects = renderEnvironment({
      config: configWith(),
      flavor: 'v1.31-1node',
      envId: newEnvId(),
      secrets: await sharedSecrets(),
      owner: {
        session: 's-1',
        student: 'U123',
        lab: 'coredns-broken',
        expiresAt: '2026-11-24T23:00:00Z',
      },
    });
    expect(objects[0]?.metadata?.annotations).toEqual({
      'labvirt.io/session': 's-1',
      'labvirt.io/student': 'U123',
      'labvirt.io/lab': 'coredns-broken',
      'labvirt.io/expires-at': '2026-11-24T23:00:00Z',
    });
  });

  it('keep the env CA, token and SSH keys in its cloud-init Secret', async () => {
    const objects = await renderWith('v1.31-1node');
    const secrets = await sharedSecrets();
    const pki = named(objects, 'Secret', 'cloudinit');
    const dec = (k: string) => Buffer.from(pki.data[k], 'base64').toString('utf8');
    expect(dec('ca.crt')).toBe(secrets.ca.certPem);
    expect(dec('ca.key')).toBe(secrets.ca.keyPem);
    expect(dec('token')).toBe(secrets.bootstrapToken);
    // The env's SSH identity lives with its PKI: its own login key and each node's host key.
    expect(dec('ssh.key')).toBe(secrets.sshKey.privateKey);
    expect(dec('ssh.pub')).toBe(secrets.sshKey.publicKey);
    for (const node of ['control-plane', 'worker-1', 'worker-2'] as const) {
      expect(dec(`host-${node}.pub`)).toBe(secrets.hostKeys[node].publicKey);
      expect(dec(`host-${node}.key`)).toBe(secrets.hostKeys[node].privateKey);
    }
    // The NodePort sync's client certificate, issued with the CA so a claim signs none.
    const sync = new X509Certificate(dec('sync.crt'));
    expect(sync.checkIssued(new X509Certificate(secrets.ca.certPem))).toBe(true);
    expect(sync.verify(new X509Certificate(secrets.ca.certPem).publicKey)).toBe(true);
    expect(sync.subject).toMatch(/CN=labvirt:nodeport-sync/);
    expect(sync.subject).toMatch(/O=system:masters/);
    expect(sync.keyUsage).toContain('1.3.6.1.5.5.7.3.2');
    expect(sync.checkPrivateKey(createPrivateKey(dec('sync.key')))).toBe(true);
    expect(Date.parse(sync.validTo) - Date.now()).toBeGreaterThan(30 * 86_400_000);
  });

  it('give every env its own login key and host keys', async () => {
    const [a, b] = await Promise.all([generateEnvSecrets(), generateEnvSecrets()]);
    expect(a.sshKey.publicKey).not.toBe(b.sshKey.publicKey);
    expect(a.hostKeys['control-plane'].publicKey).not.toBe(b.hostKeys['control-plane'].publicKey);
    expect(a.hostKeys['worker-1'].publicKey).not.toBe(a.hostKeys['worker-2'].publicKey);
  });

  it('have one VM per node of the flavor', async () => {
    expect(
      byKind(await renderWith('v1.30-3node'), 'VirtualMachine').map((v) => v.metadata.name),
    ).toEqual(['control-plane', 'worker-1', 'worker-2']);
    expect(
      byKind(await renderWith('v1.31-1node'), 'VirtualMachine').map((v) => v.metadata.name),
    ).toEqual(['control-plane']);
  });

  it('refuse an unknown flavor, a bad env id and a key that is not one OpenSSH line', async () => {
    const secrets = await sharedSecrets();
    const base = {
      config: configWith(),
      flavor: 'v1.30-3node',
      envId: 'abcd1234',
      secrets,
    };
    expect(() => renderEnvironment({ ...base, flavor: 'v1.99-3node' })).toThrow(
      /unknown flavor v1.99-3node; configured: v1.30-3node, v1.31-1node/,
    );
    expect(() => renderEnvironment({ ...base, envId: 'Bad-Id' })).toThrow(/env id/);
    const withKey = (publicKey: string) => ({
      ...base,
      secrets: { ...secrets, sshKey: { ...secrets.sshKey, publicKey } },
    });
    expect(() => renderEnvironment(withKey(`${ORCHESTRATOR_KEY}\nssh-rsa AAAA evil`))).toThrow(
      /one OpenSSH public key line/,
    );
    expect(() => renderEnvironment(withKey('not a key'))).toThrow(/OpenSSH/);
    const badHost = {
      ...base,
      secrets: {
        ...secrets,
        hostKeys: {
          ...secrets.hostKeys,
          'worker-1': { ...secrets.hostKeys['worker-1'], publicKey: 'ssh-rsa AAAA' },
        },
      },
    };
    expect(() => renderEnvironment(badHost)).toThrow(/host key of worker-1/);
  });

  it('newEnvId gives 8 lowercase letters and digits, different each time', () => {
    const ids = new Set(Array.from({ length: 200 }, () => newEnvId()));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(/^[a-z0-9]{8}$/);
    expect(envNamespace(configWith({ namespacePrefix: 'class-' }), 'k3x9q2ab')).toBe(
      'class-k3x9q2ab',
    );
  });
});

describe('the VirtualMachine template', () => {
  it('boots with the properties KubeVirt and the contracts require', async () => {
    const objects = await renderWith('v1.30-3node');
    for (const vm of byKind(objects, 'VirtualMachine')) {
      const name = vm.metadata.name as string;
      const role = name === 'control-plane' ? 'control-plane' : 'worker';
      expect(vm.apiVersion).toBe('kubevirt.io/v1');
      expect(vm.spec.runStrategy).toBe('Always');
      expect(vm.spec.running).toBeUndefined();
      const expectedLabels = {
        [LABELS.env]: 'abcd1234',
        [LABELS.flavor]: 'v1.30-3node',
        [LABELS.role]: role,
        [LABELS.node]: name,
        [LABELS.managedBy]: 'labvirt',
      };
      expect(vm.metadata.labels).toEqual(expectedLabels);
      // Only these reach the virt-launcher pod that policies and Services select.
      expect(vm.spec.template.metadata.labels).toEqual(expectedLabels);
      const spec = vm.spec.template.spec;
      expect(spec.hostname).toBe(name);
      expect(spec.domain.devices.interfaces).toEqual([{ name: 'default', bridge: {} }]);
      expect(spec.networks).toEqual([{ name: 'default', pod: {} }]);
      expect(spec.domain.devices.autoattachGraphicsDevice).toBe(false);
      expect(spec.readinessProbe.guestAgentPing).toEqual({});
      const cloudInit = spec.volumes.find((v: any) => v.cloudInitNoCloud).cloudInitNoCloud;
      expect(cloudInit).toEqual({ secretRef: { name: 'cloudinit' } });
      expect(cloudInit.userData).toBeUndefined();
      expect(spec.volumes.find((v: any) => v.containerDisk).containerDisk.image).toBe(
        'quay.io/containerdisks/ubuntu:22.04',
      );
      // Every disk has a volume.
      const volumes = spec.volumes.map((v: any) => v.name).sort();
      expect(spec.domain.devices.disks.map((d: any) => d.name).sort()).toEqual(volumes);
    }
    expect(
      named(objects, 'VirtualMachine', 'control-plane').spec.template.spec.domain,
    ).toMatchObject({
      cpu: { cores: 2 },
      memory: { guest: '2Gi' },
      resources: { limits: { cpu: '1' }, requests: { 'ephemeral-storage': '22Gi' } },
    });
    expect(named(objects, 'VirtualMachine', 'worker-1').spec.template.spec.domain).toMatchObject({
      cpu: { cores: 1 },
      memory: { guest: '1Gi' },
      resources: { limits: { cpu: '1' } },
    });
  });

  it('reads the templates from LABVIRT_VM_TEMPLATES_DIR when set, and says what is missing', async () => {
    const old = process.env.LABVIRT_VM_TEMPLATES_DIR;
    process.env.LABVIRT_VM_TEMPLATES_DIR = '/nonexistent/vm-templates';
    try {
      await expect(renderWith('v1.31-1node')).rejects.toThrow(
        /cannot read template \/nonexistent\/vm-templates\/control-plane.yaml/,
      );
    } finally {
      if (old === undefined) delete process.env.LABVIRT_VM_TEMPLATES_DIR;
      else process.env.LABVIRT_VM_TEMPLATES_DIR = old;
    }
  });
});

describe('Services', () => {
  it('name the control plane under the nodes Service, not with a Service of its own', async () => {
    const objects = await renderWith('v1.30-3node');
    // One write fewer per env: its endpoint is `control-plane.nodes.<ns>.svc`.
    expect(objects.some((o) => o.kind === 'Service' && o.metadata?.name === 'control-plane')).toBe(
      false,
    );
    const nodes = named(objects, 'Service', 'nodes');
    expect(nodes.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    expect(nodes.spec.selector).toEqual({ [LABELS.env]: 'abcd1234' });
    const cp = named(objects, 'VirtualMachine', 'control-plane');
    expect(cp.spec.template.spec).toMatchObject({ hostname: 'control-plane', subdomain: 'nodes' });
    const doc = parseYaml(userDataOf(objects, 'control-plane')) as any;
    const env = doc.write_files.find((f: any) => f.path === '/etc/labvirt/cluster.env').content;
    expect(env.split('\n')).toContain("LABVIRT_CONTROL_PLANE_NAME='control-plane.nodes'");
  });

  it('add the SSH NodePort to the control plane in nodeport mode only', async () => {
    const gateway = await renderWith('v1.31-1node', { ssh: { mode: 'gateway' } });
    expect(byKind(gateway, 'Service').map((s) => s.metadata.name)).toEqual(['nodes']);
    const nodeport = await renderWith('v1.31-1node', { ssh: { mode: 'nodeport' } });
    expect(named(nodeport, 'Service', 'ssh').spec).toEqual({
      type: 'NodePort',
      selector: { [LABELS.env]: 'abcd1234', [LABELS.node]: 'control-plane' },
      ports: [{ name: 'ssh', protocol: 'TCP', port: 22, targetPort: 22 }],
    });
  });
});

describe('ResourceQuota and LimitRange', () => {
  it('size the quota from the VMs plus launcher overhead', async () => {
    // 2Gi guest, 2 vCPUs: 2048 + 220 + 4 + 16 = 2288; 1Gi, 1 vCPU: 1024 + 220 + 2 + 8 = 1254.
    expect(launcherMemoryMi('2Gi', 2)).toBe(2288);
    expect(launcherMemoryMi('1Gi', 1)).toBe(1254);
    const three = named(await renderWith('v1.30-3node'), 'ResourceQuota', 'env-quota');
    expect(three.spec.hard).toMatchObject({
      pods: '4',
      'requests.memory': `${2288 + 2 * 1254 + 3 * 128}Mi`,
      'requests.cpu': '4500m',
      'limits.cpu': '4500m',
      'count/virtualmachines.kubevirt.io': '3',
      persistentvolumeclaims: '0',
    });
    const one = named(await renderWith('v1.31-1node'), 'ResourceQuota', 'env-quota');
    expect(one.spec.hard).toMatchObject({
      pods: '2',
      'requests.memory': `${2288 + 128}Mi`,
      'limits.cpu': '1500m',
    });
  });

  it('counts the SSH NodePort in nodeport mode', async () => {
    const gw = named(
      await renderWith('v1.31-1node', { ssh: { mode: 'gateway' } }),
      'ResourceQuota',
      'env-quota',
    );
    const np = named(
      await renderWith('v1.31-1node', { ssh: { mode: 'nodeport' } }),
      'ResourceQuota',
      'env-quota',
    );
    expect(Number(np.spec.hard['services.nodeports'])).toBe(
      Number(gw.spec.hard['services.nodeports']) + 1,
    );
  });

  it('caps containers at the largest VM CPU limit', async () => {
    const lr = named(
      await renderWith('v1.31-1node', {
        vm: { controlPlane: { cpus: 2, memory: '2Gi', cpuLimit: '2' } },
      }),
      'LimitRange',
      'limits',
    );
    expect(lr.spec.limits[0]).toMatchObject({ type: 'Container', max: { cpu: '2' } });
  });
});
