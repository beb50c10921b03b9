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
export function cloudInitSecretName(node: NodeName): string {
  return `${node}-cloudinit`;
}

/**
 * The Secret holding the env's PKI: its cluster CA and bootstrap token (keys
 * `ca.crt`, `ca.key`, `token`) and its SSH identity. It is the control
 * plane's cloud-init Secret, beside its `userdata` (KubeVirt reads only that
 * key): the control plane's user data carries the CA already, and one Secret
 * fewer is one API write fewer per env.
 */
export const ENV_PKI_SECRET = cloudInitSecretName('control-plane');

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
