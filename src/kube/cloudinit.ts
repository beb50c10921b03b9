import { stringify } from 'yaml';
import type { Config, FlavorConfig } from '../config/index.js';
import { imagesInUse, nodeImages, registryEndpoint, type ImageLock } from '../images/index.js';
import {
  CONTROL_PLANE_NAME,
  NODES_SERVICE,
  nodeNames,
  type NodeName,
  type NodeRole,
} from './names.js';
import type { EnvSecrets } from './secrets.js';
import { cloudInitDir, inventoryDirs, loadYamlTemplate, readTemplateFile } from './templates.js';

export interface UserDataInput {
  config: Config;
  flavor: FlavorConfig;
  namespace: string;
  node: NodeName;
  role: NodeRole;
  /** The env's CA and token, its key (for `labvirt`) and the node's host key. */
  secrets: EnvSecrets;
  /** Images this node pulls that the lock lists are pre-pulled by digest (see `IMAGES_LOCK_PATH`). */
  imageLock?: ImageLock;
}

/** Where the scripts find the env's settings (see cloud-init/lib.sh). */
export const CLUSTER_ENV_PATH = '/etc/labvirt/cluster.env';

const SSH_PUBLIC_KEY =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\r\n]*)?$/;
// Values go into a file the scripts source: only characters that need no
// quoting beyond single quotes, so nothing can break out of them.
const SAFE_ENV_VALUE = /^[A-Za-z0-9._:/=+,-]*$/;

/** Where the kubelet reads the resolvers for pods with `dnsPolicy: Default`, CoreDNS included. */
export const UPSTREAM_RESOLV_CONF = '/etc/labvirt/upstream-resolv.conf';
/**
 * The digests of the images this node pulls, one `<name> <digest>` a line
 * (names normalised, as containerd stores them): install-kubernetes.sh pulls
 * each by digest and tags it under its name, and control-plane.sh pins
 * Calico's manifest with it (cloud-init/lib.sh).
 */
export const IMAGES_LOCK_PATH = '/etc/labvirt/images.lock';
/** Proxy settings the scripts source (curl and kubeadm read these variables). */
export const PROXY_ENV_PATH = '/etc/labvirt/proxy.env';
/**
 * The env's student key (root-only here); the bootstrap copies it into
 * student's ~/.ssh (cloud-init/lib.sh, `env_node_access`).
 */
export const STUDENT_KEY_PATH = '/etc/labvirt/student-ssh.key';
/** The resolver drop-in that makes the env's node names resolve (`ssh worker-1`). */
export const NODE_DOMAIN_CONF = '/etc/systemd/resolved.conf.d/labvirt-nodes.conf';

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
 * cloud-init/, with its scripts embedded, the env's own orchestrator key, the
 * node's host key, the env's settings, and (control plane only) the cluster CA.
 */
export function renderUserData(input: UserDataInput): string {
  const { config, flavor, node, role, secrets } = input;
  const key = secrets.sshKey.publicKey.trim();
  if (!SSH_PUBLIC_KEY.test(key)) {
    throw new Error("the env's SSH key must be one OpenSSH public key line");
  }
  const hostKey = secrets.hostKeys[node];
  if (!hostKey || !/^ssh-ed25519 [A-Za-z0-9+/=]+$/.test(hostKey.publicKey.trim())) {
    throw new Error(`the host key of ${node} must be one ssh-ed25519 public key line`);
  }
  const dir = cloudInitDir();
  const doc = loadYamlTemplate(dir, `${role}.yaml`);

  doc.hostname = node;
  const users = Array.isArray(doc.users) ? (doc.users as Record<string, unknown>[]) : [];
  const labvirt = users.find((u) => u && typeof u === 'object' && u.name === 'labvirt');
  if (!labvirt) throw new Error(`${dir}/${role}.yaml must declare the user "labvirt"`);
  labvirt.ssh_authorized_keys = [key];
  const student = users.find((u) => u && typeof u === 'object' && u.name === 'student');
  if (!student) throw new Error(`${dir}/${role}.yaml must declare the user "student"`);
  const studentKey = secrets.studentKey.publicKey.trim();
  if (!SSH_PUBLIC_KEY.test(studentKey)) {
    throw new Error("the env's student key must be one OpenSSH public key line");
  }
  // The env's own student key, so `ssh worker-1` works between its nodes;
  // the student's personal key is appended at claim.
  student.ssh_authorized_keys = [studentKey];
  // The host key labvirt generated for this node: known before the first
  // boot, the same after a restart from a fresh disk, and the only one the
  // guest has (cloud-init deletes the image's keys and, given `ssh_keys`,
  // generates none), so labvirt requires exactly it.
  doc.ssh_deletekeys = true;
  doc.ssh_keys = {
    ed25519_private: hostKey.privateKey,
    ed25519_public: hostKey.publicKey.trim(),
  };

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
      LABVIRT_CONTROL_PLANE_NAME: CONTROL_PLANE_NAME,
      LABVIRT_EXPECTED_NODES: String(flavor.nodes),
      LABVIRT_BOOTSTRAP_TOKEN: secrets.bootstrapToken,
      LABVIRT_CA_CERT_HASH: secrets.caHash,
      LABVIRT_HOST_CLUSTER_DOMAIN: config.network.hostClusterDomain,
      // The guests stop retrying when labvirt stops waiting (counted from
      // their first boot, which comes after labvirt's clock started).
      LABVIRT_DEADLINE_SECONDS: String(config.pool.provisionDeadlineSeconds),
    }),
  });
  files.push(
    {
      path: UPSTREAM_RESOLV_CONF,
      permissions: '0644',
      owner: 'root:root',
      content: upstreamResolvConf(config),
    },
    ...registryMirrorFiles(config),
    ...proxyFiles(config),
    ...imageLockFiles(input),
    ...nodeAccessFiles(input),
  );
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

/** The first line that has cloud-init render the user data as a Jinja template. */
const JINJA_TEMPLATE_HEADER = '## template: jinja';
const CLOUD_CONFIG_HEADER = '#cloud-config\n';
const JINJA_RAW_END = /\{%-?\s*endraw\s*-?%\}/;

/**
 * One user data for every node of an env, so that all its VMs share one
 * Secret: each node's own `#cloud-config` (renderUserData) as a branch of a
 * Jinja template, which cloud-init renders on the VM with the instance data
 * KubeVirt gives it: `v1.local_hostname` is the VM's `spec.hostname`, the
 * node's name. Each branch is kept verbatim (`raw`), so nothing in a script
 * is read as Jinja. A VM whose hostname names no node gets a config that
 * says so on its console, and no access.
 *
 * Every node's user data is in every node's: neutral within one env, where
 * the student is root on every node (what each node holds is in
 * docs/security.md).
 */
export function renderEnvUserData(perNode: ReadonlyMap<NodeName, string>): string {
  const lines = [JINJA_TEMPLATE_HEADER, CLOUD_CONFIG_HEADER.trimEnd()];
  let keyword = 'if';
  for (const [node, userData] of perNode) {
    if (!/^[a-z0-9-]+$/.test(node)) throw new Error(`node name "${node}" is not a hostname`);
    if (!userData.startsWith(CLOUD_CONFIG_HEADER)) {
      throw new Error(`the user data of ${node} must start with #cloud-config`);
    }
    const body = userData.slice(CLOUD_CONFIG_HEADER.length);
    if (JINJA_RAW_END.test(body)) {
      throw new Error(
        `the user data of ${node} holds "endraw", which would end its Jinja raw block`,
      );
    }
    lines.push(`{% ${keyword} v1.local_hostname == "${node}" %}`, '{% raw %}');
    lines.push(body.endsWith('\n') ? body.slice(0, -1) : body, '{% endraw %}');
    keyword = 'elif';
  }
  if (keyword === 'if') throw new Error('an env has at least one node');
  lines.push(
    '{% else %}',
    'bootcmd:',
    '  - [logger, -s, "labvirt: this VM\'s hostname names no node of its env; it is left unconfigured"]',
    '{% endif %}',
  );
  return `${lines.join('\n')}\n`;
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

/**
 * The resolv.conf the kubelet hands CoreDNS (KubeletConfiguration
 * `resolvConf`): the configured public resolvers, never the host cluster's
 * DNS that the guest's own resolv.conf points at.
 */
function upstreamResolvConf(config: Config): string {
  const lines = ['# Written by labvirt: CoreDNS forwards here (network.upstreamDns).'];
  for (const ip of config.network.upstreamDns) lines.push(`nameserver ${ip}`);
  return `${lines.join('\n')}\n`;
}

/** containerd's hosts.toml per mirrored registry (`config_path` is set by install-kubernetes.sh). */
function registryMirrorFiles(config: Config): WriteFile[] {
  return Object.entries(config.vm.registryMirrors).map(([registry, mirrors]) => {
    const lines = [
      '# Written by labvirt from vm.registryMirrors.',
      `server = ${JSON.stringify(registryEndpoint(registry))}`,
    ];
    for (const mirror of mirrors) {
      lines.push('', `[host.${JSON.stringify(mirror.replace(/\/+$/, ''))}]`);
      lines.push('  capabilities = ["pull", "resolve"]');
    }
    return {
      path: `/etc/containerd/certs.d/${registry}/hosts.toml`,
      permissions: '0644',
      owner: 'root:root',
      content: `${lines.join('\n')}\n`,
    };
  });
}

/**
 * What lets the student go from node to node by name: the resolver searches
 * the env's node domain (the `nodes` headless Service, the VMs' subdomain),
 * every node's host key is known under its names (no trust-on-first-use
 * prompt), and the env's student key (copied into ~/.ssh by the bootstrap).
 */
function nodeAccessFiles(input: UserDataInput): WriteFile[] {
  const { config, flavor, namespace, secrets } = input;
  const domain = `${NODES_SERVICE}.${namespace}.svc.${config.network.hostClusterDomain}`;
  const knownHosts = nodeNames(flavor.nodes).map((node) => {
    const hostKey = secrets.hostKeys[node].publicKey.trim();
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+$/.test(hostKey)) {
      throw new Error(`the host key of ${node} must be one ssh-ed25519 public key line`);
    }
    // The control plane's is also its endpoint name (CONTROL_PLANE_NAME).
    const names = [node, `${node}.${domain}`];
    return `${names.join(',')} ${hostKey}`;
  });
  return [
    {
      path: NODE_DOMAIN_CONF,
      permissions: '0644',
      owner: 'root:root',
      content: `# Written by labvirt: the env's nodes by name (worker-1 is worker-1.${domain}).\n[Resolve]\nDomains=${domain}\n`,
    },
    {
      path: '/etc/ssh/ssh_known_hosts',
      permissions: '0644',
      owner: 'root:root',
      content: `# Written by labvirt: the host keys of this env's nodes.\n${knownHosts.join('\n')}\n`,
    },
    {
      path: STUDENT_KEY_PATH,
      permissions: '0600',
      owner: 'root:root',
      content: secrets.studentKey.privateKey.endsWith('\n')
        ? secrets.studentKey.privateKey
        : `${secrets.studentKey.privateKey}\n`,
    },
    {
      path: `${STUDENT_KEY_PATH}.pub`,
      permissions: '0644',
      owner: 'root:root',
      content: `${secrets.studentKey.publicKey.trim()}\n`,
    },
  ];
}

/** The lock's digests of the images this node pulls; nothing without a lock. */
function imageLockFiles(input: UserDataInput): WriteFile[] {
  const lock = input.imageLock;
  if (!lock || lock.images.size === 0) return [];
  const config = { ...input.config, flavors: { this: input.flavor } };
  const uses = imagesInUse(config, inventoryDirs(), { skipUnknownMinors: true });
  const lines = nodeImages(uses, input.flavor.kubernetesVersion, input.role)
    .filter((name) => lock.images.has(name))
    .map((name) => `${name} ${lock.images.get(name)!}`);
  if (lines.length === 0) return [];
  return [
    {
      path: IMAGES_LOCK_PATH,
      permissions: '0644',
      owner: 'root:root',
      content: `# Written by labvirt from its image lock (${lock.source ?? 'vm.imagesLock'}).\n${lines.join('\n')}\n`,
    },
  ];
}

/** The no_proxy list: the operator's entries plus what must never go through a proxy. */
export function noProxyList(config: Config): string[] {
  const domain = config.network.hostClusterDomain;
  const always = [
    'localhost',
    '127.0.0.1',
    config.network.podCidr,
    config.network.serviceCidr,
    '.svc',
    `.${domain}`,
    'cluster.local',
    '.cluster.local',
  ];
  return [...new Set([...always, ...(config.vm.proxy?.noProxy ?? [])])];
}

/** apt's, curl's (via the scripts) and containerd's proxy settings. */
function proxyFiles(config: Config): WriteFile[] {
  const proxy = config.vm.proxy;
  if (!proxy || (!proxy.http && !proxy.https)) return [];
  const noProxy = noProxyList(config).join(',');
  const vars: [string, string][] = [];
  if (proxy.http) vars.push(['http_proxy', proxy.http], ['HTTP_PROXY', proxy.http]);
  if (proxy.https) vars.push(['https_proxy', proxy.https], ['HTTPS_PROXY', proxy.https]);
  vars.push(['no_proxy', noProxy], ['NO_PROXY', noProxy]);
  const apt = [
    ...(proxy.http ? [`Acquire::http::Proxy "${proxy.http}";`] : []),
    ...(proxy.https ? [`Acquire::https::Proxy "${proxy.https}";`] : []),
  ];
  // systemd expands % in Environment=; the URLs hold no quotes or spaces.
  const unit = [
    '[Service]',
    ...vars
      .filter(([name]) => name === name.toUpperCase())
      .map(([name, value]) => `Environment="${name}=${value.replace(/%/g, '%%')}"`),
  ];
  return [
    {
      path: PROXY_ENV_PATH,
      permissions: '0600',
      owner: 'root:root',
      content: `${vars.map(([name, value]) => `export ${name}='${value}'`).join('\n')}\n`,
    },
    {
      path: '/etc/apt/apt.conf.d/95labvirt-proxy',
      // A proxy URL may carry credentials.
      permissions: '0600',
      owner: 'root:root',
      content: `${apt.join('\n')}\n`,
    },
    {
      path: '/etc/systemd/system/containerd.service.d/labvirt-proxy.conf',
      permissions: '0600',
      owner: 'root:root',
      content: `${unit.join('\n')}\n`,
    },
  ];
}
