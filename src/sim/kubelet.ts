import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KUBELET_READY, KUBELET_SILENT, type NodeReadiness } from './nodes.js';

/**
 * What a sim node's kubelet would post as its Ready condition. Sim guests
 * run no kubelet and no containerd: their state is files on the guest's disk
 * (labs break and fix them there, as the labs' sim scripts do), and the sim
 * reads them as the real control plane sees the real services:
 *
 * - `/run/sim/kubelet.state` with `active=no`: the kubelet is stopped, posts
 *   nothing, and the node controller marks the node `Unknown`.
 * - `/etc/containerd/config.toml` whose `[grpc] address` is not the socket
 *   the kubelet uses (`/run/containerd/containerd.sock`), and no symlink
 *   there to it, or `/run/sim/containerd.state` with `active=no`: the
 *   kubelet runs but its runtime is down, `Ready=False`.
 *
 * The guests' `systemctl` (src/sim/guest/tools) writes the state files as
 * labs' sim scripts do; the node's condition goes back into the guest
 * (`/run/sim/kubelet.condition`) for its `journalctl -u kubelet`.
 *
 * Absent files mean a healthy node (what kubeadm leaves).
 */
export const KUBELET_STATE_FILE = '/run/sim/kubelet.state';
export const CONTAINERD_STATE_FILE = '/run/sim/containerd.state';
/** Why the node is not Ready, while its kubelet runs (read by the guest's journalctl). */
export const KUBELET_CONDITION_FILE = '/run/sim/kubelet.condition';
export const CONTAINERD_CONFIG = '/etc/containerd/config.toml';
/** The kubelet's container runtime endpoint, as kubeadm configures it. */
export const KUBELET_RUNTIME_SOCKET = '/run/containerd/containerd.sock';

/** The kubelet runs, its runtime does not answer on the kubelet's endpoint. */
const RUNTIME_DOWN: NodeReadiness = {
  status: 'False',
  reason: 'KubeletNotReady',
  message: `container runtime is down, PLEG is not healthy: rpc error: code = Unavailable desc = connection error: dial unix ${KUBELET_RUNTIME_SOCKET}: connect: no such file or directory`,
};

export async function kubeletReadiness(guestRoot: string): Promise<NodeReadiness> {
  const state = await readIfThere(join(guestRoot, KUBELET_STATE_FILE));
  if (state !== undefined && /^active=no$/m.test(state)) return KUBELET_SILENT;
  const containerd = await readIfThere(join(guestRoot, CONTAINERD_STATE_FILE));
  if (containerd !== undefined && /^active=no$/m.test(containerd)) return RUNTIME_DOWN;
  const listening = await containerdAddress(guestRoot);
  if (listening === KUBELET_RUNTIME_SOCKET) return KUBELET_READY;
  // A symlink at the kubelet's endpoint reaches containerd (until /run is emptied).
  const link = join(guestRoot, KUBELET_RUNTIME_SOCKET);
  const isLink = await lstat(link).then(
    (s) => s.isSymbolicLink(),
    () => false,
  );
  if (isLink && (await readlink(link).catch(() => undefined)) === listening) return KUBELET_READY;
  return RUNTIME_DOWN;
}

/**
 * Tells the guest why its running kubelet's node is not Ready (removed when
 * it is, or when the kubelet is stopped and says nothing). A guest gone
 * meanwhile is no error.
 */
export async function recordKubeletCondition(
  guestRoot: string,
  readiness: NodeReadiness,
): Promise<void> {
  const file = join(guestRoot, KUBELET_CONDITION_FILE);
  if (readiness.status !== 'False') {
    // Absent on most nodes (see readIfThere): a stat, not a failed removal.
    if (existsSync(file)) await rm(file, { force: true }).catch(() => undefined);
    return;
  }
  await mkdir(join(file, '..'), { recursive: true })
    .then(() => writeFile(file, `${readiness.message}\n`))
    .catch(() => undefined);
}

/** Where containerd listens: `[grpc] address` of its config, else its default. */
async function containerdAddress(guestRoot: string): Promise<string> {
  const config = await readIfThere(join(guestRoot, CONTAINERD_CONFIG));
  let table = '';
  for (const line of (config ?? '').split('\n')) {
    const header = /^\s*\[([^\]]+)\]\s*(#.*)?$/.exec(line);
    if (header) {
      table = header[1]!.trim();
      continue;
    }
    const address = /^\s*address\s*=\s*"([^"]*)"/.exec(line);
    if (table === 'grpc' && address) return address[1]!;
  }
  return KUBELET_RUNTIME_SOCKET;
}

/**
 * A file's text, or undefined when there is none. Most guests have none of
 * these files, and every heartbeat asks every node (600 in a 200-env burst,
 * each second at speed 20): a missing file is a stat here (5 µs of CPU,
 * measured), not a rejected read, whose ENOENT error costs 70 µs.
 */
async function readIfThere(path: string): Promise<string | undefined> {
  if (!existsSync(path)) return undefined;
  return readFile(path, 'utf8').catch(() => undefined);
}
