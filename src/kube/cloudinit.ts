import { stringify } from 'yaml';
import type { Config, FlavorConfig } from '../config/index.js';
import { CONTROL_PLANE_SERVICE, type NodeName, type NodeRole } from './names.js';
import type { EnvSecrets } from './secrets.js';
import { cloudInitDir, loadYamlTemplate, readTemplateFile } from './templates.js';

export interface UserDataInput {
  config: Config;
  flavor: FlavorConfig;
  namespace: string;
  node: NodeName;
  role: NodeRole;
  orchestratorPublicKey: string;
  secrets: EnvSecrets;
}

/** Where the scripts find the env's settings (see cloud-init/lib.sh). */
export const CLUSTER_ENV_PATH = '/etc/labvirt/cluster.env';

const SSH_PUBLIC_KEY =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\r\n]*)?$/;
// Values go into a file the scripts source: only characters that need no
// quoting beyond single quotes, so nothing can break out of them.
const SAFE_ENV_VALUE = /^[A-Za-z0-9._:/=+-]*$/;

interface WriteFile {
  path: string;
  content?: string;
  source?: string;
  permissions?: string;
  owner?: string;
  [key: string]: unknown;
}

/**
 * The `#cloud-config` user data of one VM: the role's template from
 * cloud-init/, with its scripts embedded, the orchestrator's key, the env's
 * settings, and (control plane only) the cluster CA.
 */
export function renderUserData(input: UserDataInput): string {
  const { config, flavor, node, role, secrets } = input;
  const key = input.orchestratorPublicKey.trim();
  if (!SSH_PUBLIC_KEY.test(key)) {
    throw new Error('orchestratorPublicKey must be one OpenSSH public key line');
  }
  const dir = cloudInitDir();
  const doc = loadYamlTemplate(dir, `${role}.yaml`);

  doc.hostname = node;
  const users = Array.isArray(doc.users) ? (doc.users as Record<string, unknown>[]) : [];
  const labvirt = users.find((u) => u && typeof u === 'object' && u.name === 'labvirt');
  if (!labvirt) throw new Error(`${dir}/${role}.yaml must declare the user "labvirt"`);
  labvirt.ssh_authorized_keys = [key];

  const files = (Array.isArray(doc.write_files) ? doc.write_files : []) as WriteFile[];
  for (const f of files) {
    if (f.source !== undefined) {
      f.content = readTemplateFile(dir, String(f.source));
      delete f.source;
    }
  }
  files.push({
    path: CLUSTER_ENV_PATH,
    permissions: '0600',
    owner: 'root:root',
    content: clusterEnv({
      LABVIRT_ROLE: role,
      LABVIRT_NODE_NAME: node,
      LABVIRT_ENV_NAMESPACE: input.namespace,
      LABVIRT_K8S_MINOR: flavor.kubernetesVersion,
      LABVIRT_GOLDEN_IMAGE: String(flavor.goldenImage),
      LABVIRT_POD_CIDR: config.network.podCidr,
      LABVIRT_SERVICE_CIDR: config.network.serviceCidr,
      LABVIRT_CONTROL_PLANE_SERVICE: CONTROL_PLANE_SERVICE,
      LABVIRT_EXPECTED_NODES: String(flavor.nodes),
      LABVIRT_BOOTSTRAP_TOKEN: secrets.bootstrapToken,
      LABVIRT_CA_CERT_HASH: secrets.caHash,
    }),
  });
  if (role === 'control-plane') {
    // kubeadm init keeps a CA it finds in place: every env's cluster is
    // signed by the CA labvirt generated, which is what the workers' hash pins.
    files.push(
      {
        path: '/etc/kubernetes/pki/ca.crt',
        permissions: '0644',
        owner: 'root:root',
        content: secrets.ca.certPem,
      },
      {
        path: '/etc/kubernetes/pki/ca.key',
        permissions: '0600',
        owner: 'root:root',
        content: secrets.ca.keyPem,
      },
    );
  }
  doc.write_files = files;
  // `#cloud-config` must be the very first line.
  return `#cloud-config\n${stringify(doc, { lineWidth: 0 })}`;
}

function clusterEnv(values: Record<string, string>): string {
  const lines = ['# Written by labvirt at render time; sourced by /usr/local/lib/labvirt/*.sh'];
  for (const [name, value] of Object.entries(values)) {
    if (!SAFE_ENV_VALUE.test(value)) {
      throw new Error(`refusing to write ${name}: unexpected characters in its value`);
    }
    lines.push(`${name}='${value}'`);
  }
  return `${lines.join('\n')}\n`;
}
