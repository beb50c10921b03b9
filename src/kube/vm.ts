import type {
  V1Volume,
  V1VirtualMachine,
  V1VirtualMachineInstanceSpec,
} from '@kubevirt-ui-ext/kubevirt-api/kubevirt';
import type { Config, FlavorConfig } from '../config/index.js';
import type { KubeObject } from './client.js';
import { cloudInitSecretName, type NodeName, type NodeRole } from './names.js';
import { loadYamlTemplate, vmTemplatesDir } from './templates.js';

export interface VmInput {
  config: Config;
  flavor: FlavorConfig;
  namespace: string;
  node: NodeName;
  role: NodeRole;
  /** Labels for the VM and its launcher pod (env, flavor, role, node, managed-by). */
  labels: Record<string, string>;
}

/**
 * One VM of an env from its role's template in vm-templates/: name, labels
 * (on the VM and on `spec.template.metadata.labels`, the only ones that reach
 * the virt-launcher pod), hostname, vCPUs, memory, CPU limit, image and
 * cloud-init Secret filled in; everything else as the template says.
 */
export function renderVirtualMachine(input: VmInput): KubeObject {
  const { config, flavor, node, role } = input;
  const file = `${vmTemplatesDir()}/${role}.yaml`;
  const vm = loadYamlTemplate(vmTemplatesDir(), `${role}.yaml`) as unknown as V1VirtualMachine;
  if (vm.apiVersion !== 'kubevirt.io/v1' || vm.kind !== 'VirtualMachine') {
    throw new Error(`${file} must be a kubevirt.io/v1 VirtualMachine`);
  }
  const res = role === 'control-plane' ? config.vm.controlPlane : config.vm.worker;

  vm.metadata = {
    ...vm.metadata,
    name: node,
    namespace: input.namespace,
    labels: { ...vm.metadata?.labels, ...input.labels },
  };
  const tpl = (vm.spec.template ??= {});
  tpl.metadata = {
    ...tpl.metadata,
    labels: { ...(tpl.metadata?.labels as Record<string, string> | undefined), ...input.labels },
  };
  const spec = (tpl.spec ??= {} as V1VirtualMachineInstanceSpec);
  spec.hostname = node;
  const domain = (spec.domain ??= { devices: {} });
  domain.cpu = { ...domain.cpu, cores: res.cpus };
  domain.memory = { ...domain.memory, guest: res.memory };
  domain.resources = {
    ...domain.resources,
    limits: { ...domain.resources?.limits, cpu: res.cpuLimit },
  };

  const volumes: V1Volume[] = spec.volumes ?? [];
  const disk = volumes.find((v) => v.containerDisk);
  const cloudInit = volumes.find((v) => v.cloudInitNoCloud);
  if (!disk?.containerDisk || !cloudInit?.cloudInitNoCloud) {
    throw new Error(`${file} needs a containerDisk volume and a cloudInitNoCloud volume`);
  }
  disk.containerDisk.image = flavor.image ?? config.vm.image;
  // A Secret, not inline user data: KubeVirt caps inline user data at 2048 bytes.
  cloudInit.cloudInitNoCloud = { secretRef: { name: cloudInitSecretName(node) } };
  return vm as unknown as KubeObject;
}
