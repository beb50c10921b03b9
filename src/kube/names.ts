import { randomInt } from 'node:crypto';
import type { Config } from '../config/index.js';

/** Labels labvirt puts on the host cluster (see .notes/CONTRACTS.md). */
export const LABELS = {
  env: 'labvirt.io/env',
  flavor: 'labvirt.io/flavor',
  state: 'labvirt.io/state',
  role: 'labvirt.io/role',
  node: 'labvirt.io/node',
  managedBy: 'app.kubernetes.io/managed-by',
} as const;

/** Value of `app.kubernetes.io/managed-by` on everything labvirt creates. */
export const MANAGED_BY = 'labvirt';

/** Annotations labvirt puts on an env's Namespace. */
export const ANNOTATIONS = {
  session: 'labvirt.io/session',
  student: 'labvirt.io/student',
  lab: 'labvirt.io/lab',
  /** RFC 3339. */
  expiresAt: 'labvirt.io/expires-at',
  claimedAt: 'labvirt.io/claimed-at',
  readyAt: 'labvirt.io/ready-at',
  createdAt: 'labvirt.io/session-created-at',
  studentKey: 'labvirt.io/student-key',
  hintsUsed: 'labvirt.io/hints-used',
  attempt: 'labvirt.io/attempt',
} as const;

export type EnvState =
  'provisioning' | 'booting' | 'warm' | 'claimed' | 'preparing' | 'active' | 'releasing' | 'failed';

export type NodeRole = 'control-plane' | 'worker';
export type NodeName = 'control-plane' | 'worker-1' | 'worker-2';

/**
 * The env's nodes' headless Service and the VMs' `subdomain`: every node is
 * `<node>.nodes.<ns>.svc.<domain>`, which the guests search, so `ssh worker-1`
 * works between the env's nodes.
 */
export const NODES_SERVICE = 'nodes';
/**
 * The control plane's DNS name inside its namespace: `<name>.<ns>.svc.<domain>`
 * is what the workers join through and what the API server's certificate
 * names. The node's own name under the `nodes` Service, so the env needs no
 * Service of its own for it (one API write fewer per env).
 */
export const CONTROL_PLANE_NAME = `control-plane.${NODES_SERVICE}`;
/** The per-env SSH NodePort Service in `ssh.mode: nodeport`. */
export const SSH_NODEPORT_SERVICE = 'ssh';
/**
 * The env's one cloud-init Secret: every VM's `cloudInitNoCloud.secretRef`
 * names it, and its `userdata` (the only key KubeVirt reads) is a Jinja
 * template that cloud-init renders on each VM for its own hostname
 * (renderEnvUserData). One Secret for all nodes is two API writes fewer per
 * 3-VM env than one per node.
 */
export const ENV_CLOUDINIT_SECRET = 'cloudinit';

/**
 * The Secret holding the env's PKI: its cluster CA and bootstrap token (keys
 * `ca.crt`, `ca.key`, `token`), its SSH identity and every node's host key.
 * It is the cloud-init Secret, beside its `userdata`: the user data carries
 * them already, and one Secret fewer is one API write fewer per env.
 */
export const ENV_PKI_SECRET = ENV_CLOUDINIT_SECRET;

/**
 * Where envs made by an earlier labvirt keep their PKI, newest first: the
 * control plane's own cloud-init Secret (2026-12-05 to 2026-12-07, one
 * Secret per node), then a Secret of its own (before 2026-12-05). Still
 * read, so that envs made before an upgrade stay usable.
 */
export const LEGACY_PKI_SECRETS = ['control-plane-cloudinit', 'cluster-pki'] as const;

/** VM names of an env, control plane first. */
export function nodeNames(nodes: number): NodeName[] {
  return nodes >= 3 ? ['control-plane', 'worker-1', 'worker-2'] : ['control-plane'];
}

export function roleOf(node: NodeName): NodeRole {
  return node === 'control-plane' ? 'control-plane' : 'worker';
}

export function envNamespace(config: Config, envId: string): string {
  return `${config.namespacePrefix}${envId}`;
}

export const ENV_ID_PATTERN = /^[a-z0-9]{8}$/;
const ENV_ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A fresh env id: 8 random lowercase letters and digits (unbiased). */
export function newEnvId(): string {
  let id = '';
  for (let i = 0; i < 8; i++) id += ENV_ID_ALPHABET[randomInt(ENV_ID_ALPHABET.length)];
  return id;
}
