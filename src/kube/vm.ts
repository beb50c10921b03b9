import type {
  V1Volume,
  V1VirtualMachine,
  V1VirtualMachineInstanceSpec,
} from '@kubevirt-ui-ext/kubevirt-api/kubevirt';
import type { Config, FlavorConfig } from '../config/index.js';
import { pinImage, type ImageLock } from '../images/index.js';
import type { KubeObject } from './client.js';
import { ENV_CLOUDINIT_SECRET, NODES_SERVICE, type NodeName, type NodeRole } from './names.js';
import { formatBytes, parseQuantity } from './quantity.js';
import { loadYamlTemplate, vmTemplatesDir } from './templates.js';

/**
 * The data disk's serial: the guest finds it as
 * `/dev/disk/by-id/virtio-labvirt-data` (cloud-init/install-kubernetes.sh).
 */
export const DATA_DISK_SERIAL = 'labvirt-data';
const DATA_DISK_NAME = 'datadisk';
/** Ephemeral storage a launcher needs besides the data disk (the containerDisk's overlay, logs). */
export const LAUNCHER_EPHEMERAL_OVERHEAD = 2 * 2 ** 30;

/** Ephemeral storage one VM's launcher pod requests: its data disk plus overhead. */
export function launcherEphemeralBytes(dataDisk: string): number {
  return parseQuantity(dataDisk) + LAUNCHER_EPHEMERAL_OVERHEAD;
}

export interface VmInput {
  config: Config;
  flavor: FlavorConfig;
  namespace: string;
  node: NodeName;
  role: NodeRole;
  /** Labels for the VM and its launcher pod (env, flavor, role, node, managed-by). */
  labels: Record<string, string>;
  /** Pins the containerDisk image by digest when it lists it. */
  imageLock?: ImageLock;
}

/**
 * One VM of an env from its role's template in vm-templates/: name, labels
 * (on the VM and on `spec.template.metadata.labels`, the only ones that reach
 * the virt-launcher pod), hostname and subdomain, vCPUs, memory, CPU limit, image and
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
  // With the env's headless `nodes` Service: `<node>.nodes.<ns>.svc.<domain>` in DNS.
  spec.subdomain = NODES_SERVICE;
  const domain = (spec.domain ??= { devices: {} });
  domain.cpu = { ...domain.cpu, cores: res.cpus };
  domain.memory = { ...domain.memory, guest: res.memory };
  domain.resources = {
    ...domain.resources,
    // KubeVirt copies these to the launcher's compute container: the
    // scheduler reserves node disk for the emptyDisk, and the env's quota
    // counts it (requests only; a limit would evict a VM whose disk fills).
    requests: {
      ...domain.resources?.requests,
      'ephemeral-storage': formatBytes(launcherEphemeralBytes(res.dataDisk)),
    },
    limits: { ...domain.resources?.limits, cpu: res.cpuLimit },
  };

  const volumes: V1Volume[] = spec.volumes ?? [];
  const disk = volumes.find((v) => v.containerDisk);
  const cloudInit = volumes.find((v) => v.cloudInitNoCloud);
  if (!disk?.containerDisk || !cloudInit?.cloudInitNoCloud) {
    throw new Error(`${file} needs a containerDisk volume and a cloudInitNoCloud volume`);
  }
  disk.containerDisk.image = pinImage(input.imageLock, flavor.image ?? config.vm.image);
  // containerd's images and the kubelet's files do not fit on the image's
  // root disk: a blank disk of the role's size, formatted at first boot.
  const disks = (domain.devices.disks ??= []);
  const dataDisk = disks.find((d) => d.name === DATA_DISK_NAME);
  if (dataDisk) {
    dataDisk.serial = DATA_DISK_SERIAL;
  } else {
    disks.push({ name: DATA_DISK_NAME, serial: DATA_DISK_SERIAL, disk: { bus: 'virtio' } });
  }
  const dataVolume = volumes.find((v) => v.name === DATA_DISK_NAME);
  if (dataVolume) {
    dataVolume.emptyDisk = { capacity: res.dataDisk };
  } else {
    volumes.push({ name: DATA_DISK_NAME, emptyDisk: { capacity: res.dataDisk } });
  }
  // A Secret, not inline user data: KubeVirt caps inline user data at 2048 bytes.
  cloudInit.cloudInitNoCloud = { secretRef: { name: ENV_CLOUDINIT_SECRET } };
  return vm as unknown as KubeObject;
}
