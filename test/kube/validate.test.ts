/* eslint-disable @typescript-eslint/no-explicit-any -- objects are broken field by field */
import { describe, expect, it } from 'vitest';
import {
  KubevirtSchemasMissingError,
  SchemaValidationError,
  assertValid,
  validateObject,
  type KubeObject,
} from '../../src/kube/index.js';
import { SCHEMAS_PRESENT, SCHEMAS_SKIP_REASON, named, renderWith } from './helpers.js';

async function renderedVm(): Promise<any> {
  return structuredClone(named(await renderWith('v1.30-3node'), 'VirtualMachine', 'worker-1'));
}

function messages(obj: unknown): string[] {
  return validateObject(obj).map((p) => `${p.path}: ${p.message}`);
}

describe.skipIf(!SCHEMAS_PRESENT)(
  `VirtualMachine against KubeVirt's CRD schema${SCHEMAS_SKIP_REASON}`,
  () => {
    it('accepts the rendered VM', async () => {
      expect(validateObject(await renderedVm())).toEqual([]);
    });

    it('rejects an unknown field in the VM spec, as kubectl --validate=strict does', async () => {
      const vm = await renderedVm();
      vm.spec.running = true; // deprecated but known: not an unknown field
      vm.spec.template.spec.domain.devices.interfacez = [];
      vm.spec.template.spec.domain.devices.interfaces[0].bridge = { mtu: 1400 };
      expect(messages(vm).sort()).toEqual([
        'spec.template.spec.domain.devices.interfaces[0].bridge.mtu: unknown field "mtu"',
        'spec.template.spec.domain.devices.interfacez: unknown field "interfacez"',
      ]);
    });

    it('rejects a wrong type, a missing required field and a value outside an enum', async () => {
      const vm = await renderedVm();
      vm.spec.template.spec.domain.cpu.cores = '2';
      delete vm.spec.template.spec.volumes[0].containerDisk.image;
      vm.spec.template.spec.domain.rebootPolicy = 'Sometimes';
      const found = messages(vm);
      expect(found).toContain(
        'spec.template.spec.domain.cpu.cores: Invalid type: expected integer',
      );
      expect(found).toContain('spec.template.spec.volumes[0].containerDisk.image: Required value');
      expect(found).toContain(
        'spec.template.spec.domain.rebootPolicy: Unsupported value: supported values: "Reboot", "Terminate"',
      );
    });

    it('accepts int-or-string quantities and rejects malformed ones', async () => {
      const vm = await renderedVm();
      vm.spec.template.spec.domain.resources.limits.cpu = 2;
      expect(validateObject(vm)).toEqual([]);
      vm.spec.template.spec.domain.resources.limits.cpu = '2 cores';
      expect(messages(vm)).toEqual([
        expect.stringMatching(
          /^spec\.template\.spec\.domain\.resources\.limits\.cpu: Invalid value: must match/,
        ),
      ]);
      vm.spec.template.spec.domain.resources.limits.cpu = true;
      expect(messages(vm)[0]).toMatch(
        /^spec\.template\.spec\.domain\.resources\.limits\.cpu: Invalid/,
      );
    });

    it('rejects bad label values on the VM and on its pod template, and a bad VM name', async () => {
      const vm = await renderedVm();
      vm.metadata.labels['labvirt.io/env'] = 'not valid!';
      vm.spec.template.metadata.labels['labvirt.io/node'] = 'x'.repeat(64);
      vm.metadata.name = 'Worker_1';
      const found = messages(vm);
      expect(found).toHaveLength(3);
      expect(found[0]).toMatch(
        /^metadata.name: Invalid value: "Worker_1": a lowercase RFC 1123 subdomain/,
      );
      expect(found[1]).toMatch(
        /^metadata.labels\["labvirt.io\/env"\]: invalid label value "not valid!"/,
      );
      expect(found[2]).toMatch(
        /^spec.template.metadata.labels\["labvirt.io\/node"\]: .*no more than 63 characters/,
      );
    });

    it('rejects unknown metadata fields too', async () => {
      const vm = await renderedVm();
      vm.metadata.lables = { a: 'b' };
      expect(messages(vm)).toEqual(['metadata.lables: unknown field "lables"']);
    });

    it('validates a VirtualMachineInstance with status, as the simulator writes it', () => {
      const vmi = {
        apiVersion: 'kubevirt.io/v1',
        kind: 'VirtualMachineInstance',
        metadata: {
          name: 'control-plane',
          namespace: 'lab-abcd1234',
          creationTimestamp: null,
          uid: 'u-1',
        },
        spec: { domain: { devices: {} } },
        status: {
          phase: 'Running',
          interfaces: [{ name: 'default', ipAddress: '10.244.3.17' }],
          conditions: [
            { type: 'Ready', status: 'True' },
            { type: 'AgentConnected', status: 'True' },
          ],
        },
      };
      expect(validateObject(vmi)).toEqual([]);
      expect(messages({ ...vmi, status: { ...vmi.status, phaze: 'Running' } })).toEqual([
        'status.phaze: unknown field "phaze"',
      ]);
    });
  },
);

describe('built-in kinds against the Kubernetes schemas', () => {
  it('accepts every built-in object labvirt renders', async () => {
    const builtins = (await renderWith('v1.30-3node', { ssh: { mode: 'nodeport' } })).filter(
      (o) => o.apiVersion !== 'kubevirt.io/v1',
    );
    expect([...new Set(builtins.map((o) => o.kind))].sort()).toEqual([
      'LimitRange',
      'Namespace',
      'NetworkPolicy',
      'ResourceQuota',
      'Secret',
      'Service',
    ]);
    for (const o of builtins) expect(validateObject(o)).toEqual([]);
  });

  it('rejects an unknown field, a wrong type, an enum value and a bad Service name', () => {
    const found = messages({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: '9lives', namespace: 'lab-a' },
      spec: {
        type: 'Nodeport',
        ports: [{ port: '22', protocoll: 'TCP' }],
        selector: { app: 'has space' },
      },
    });
    expect(found).toEqual([
      'spec.ports[0].protocoll: unknown field "protocoll"',
      'spec.ports[0].port: Invalid type: expected integer',
      'spec.type: Unsupported value: supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
      expect.stringMatching(/^metadata.name: Invalid value: "9lives": a DNS-1035 label/),
      expect.stringMatching(/^spec.selector.app: invalid label value "has space"/),
    ]);
  });

  it('rejects a missing required field and bad selector labels in a NetworkPolicy', () => {
    const found = messages({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'p', namespace: 'lab-a' },
      spec: {
        podSelector: { matchLabels: { 'bad key/x/y': 'v' } },
        ingress: [
          {
            from: [{ ipBlock: { except: ['10.0.0.0/8'] } }],
            ports: [{ port: 22, protocol: 'ICMP' }],
          },
        ],
      },
    });
    expect(found).toContain('spec.ingress[0].from[0].ipBlock.cidr: Required value');
    expect(
      found.some((m) => m.startsWith('spec.ingress[0].ports[0].protocol: Unsupported value')),
    ).toBe(true);
    expect(
      found.some((m) =>
        m.startsWith('spec.podSelector.matchLabels["bad key/x/y"]: invalid label key'),
      ),
    ).toBe(true);
  });

  it('checks quantities, base64 Secret data and namespaces', () => {
    expect(
      messages({
        apiVersion: 'v1',
        kind: 'ResourceQuota',
        metadata: { name: 'q', namespace: 'lab-a' },
        spec: { hard: { pods: 4, memory: '1Qi' } },
      }),
    ).toEqual(['spec.hard.memory: Invalid value: must be a quantity']);
    expect(
      messages({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 's', namespace: 'Lab_A' },
        data: { userdata: 'not base64!' },
      }),
    ).toEqual([
      'data.userdata: Invalid value: must be base64-encoded',
      expect.stringMatching(/^metadata.namespace: Invalid value: "Lab_A"/),
    ]);
    expect(
      messages({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a', namespace: 'b' } }),
    ).toEqual(['metadata.namespace: not allowed on a cluster-scoped object']);
  });

  it('requires a name (or generateName) and accepts generateName ending in a dash', () => {
    expect(messages({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'a' } })).toEqual(
      ['metadata.name: Required value: name or generateName is required'],
    );
    expect(
      messages({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { namespace: 'a', generateName: 'cm-' },
      }),
    ).toEqual([]);
  });

  it('says when it knows no schema for a kind, and when the object is not an object', () => {
    expect(
      messages({ apiVersion: 'example.org/v1', kind: 'Widget', metadata: { name: 'w' } }),
    ).toEqual(['kind: no schema known for example.org/v1/Widget']);
    expect(messages({ kind: 'Pod' })).toEqual(['apiVersion: Required value']);
    expect(messages('Pod')).toEqual([': must be an object']);
  });

  it('accepts what kubectl writes: null timestamps, numbers as quantities, status', () => {
    expect(
      validateObject({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: 'virt-launcher-x-abcde',
          namespace: 'lab-a',
          creationTimestamp: null,
          labels: { 'kubevirt.io': 'virt-launcher' },
        },
        spec: {
          containers: [
            { name: 'compute', image: 'i', resources: { requests: { cpu: 0.2, memory: '1Gi' } } },
          ],
        },
        status: { phase: 'Running', podIP: '10.244.0.5' },
      }),
    ).toEqual([]);
  });
});

describe('assertValid', () => {
  it('names every object and problem', () => {
    const bad = [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'ok', namespace: 'a' },
        data: { k: 'v' },
      },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'bad', namespace: 'a' }, dato: {} },
    ] as KubeObject[];
    expect(() => assertValid(bad)).toThrow(SchemaValidationError);
    expect(() => assertValid(bad)).toThrow('ConfigMap a/bad: dato: unknown field "dato"');
    expect(() => assertValid(bad.slice(0, 1))).not.toThrow();
  });
});

describe('missing KubeVirt schemas', () => {
  it('are reported plainly, naming the folder and the override', () => {
    const old = process.env.LABVIRT_KUBEVIRT_SCHEMAS;
    process.env.LABVIRT_KUBEVIRT_SCHEMAS = '/nonexistent/kubevirt-schemas';
    try {
      const vm = {
        apiVersion: 'kubevirt.io/v1',
        kind: 'VirtualMachine',
        metadata: { name: 'x' },
        spec: {},
      };
      expect(() => validateObject(vm)).toThrow(KubevirtSchemasMissingError);
      expect(() => validateObject(vm)).toThrow(
        /KubeVirt CRD schemas are missing: no \/nonexistent\/kubevirt-schemas\/virtualmachine.crd-schema.json \(set LABVIRT_KUBEVIRT_SCHEMAS/,
      );
      // Built-in kinds do not need them.
      expect(
        validateObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } }),
      ).toEqual([]);
    } finally {
      if (old === undefined) delete process.env.LABVIRT_KUBEVIRT_SCHEMAS;
      else process.env.LABVIRT_KUBEVIRT_SCHEMAS = old;
    }
  });
});
