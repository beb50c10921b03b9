import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import nunjucks from 'nunjucks';
import { parse } from 'yaml';

/** What cloud-init knows of the instance when it renders user data (`v1` of instance-data.json). */
export interface InstanceData {
  /** KubeVirt's NoCloud `local-hostname`: the VMI's `spec.hostname`, else its name. */
  localHostname: string;
  instanceId: string;
}

const JINJA_HEADER = /^## template: *jinja[ \t]*\r?\n/i;
// As cloud-init's renderer: blocks take their newline, and no HTML escaping.
const jinja = new nunjucks.Environment(null, { autoescape: false, trimBlocks: true });

/**
 * User data as cloud-init consumes it: a `## template: jinja` payload is
 * rendered with the instance's data first (what labvirt's one user data for
 * all of an env's nodes relies on); anything else is used as it is.
 */
export function renderUserDataTemplate(userData: string, instance: InstanceData): string {
  const header = JINJA_HEADER.exec(userData);
  if (!header) return userData;
  const v1 = {
    local_hostname: instance.localHostname,
    instance_id: instance.instanceId,
    cloud_name: 'nocloud',
    platform: 'nocloud',
  };
  return jinja.renderString(userData.slice(header[0].length), { v1 });
}

/**
 * Keys cloud-init would install, per user: `users[].ssh_authorized_keys`, and
 * top-level `ssh_authorized_keys` for the default user `ubuntu`.
 */
export function keysFromUserData(userData: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let doc: unknown;
  try {
    doc = parse(userData);
  } catch {
    return keys;
  }
  if (!doc || typeof doc !== 'object') return keys;
  const add = (user: string, list: unknown) => {
    if (!Array.isArray(list)) return;
    const strings = list.filter((k): k is string => typeof k === 'string');
    keys.set(user, [...(keys.get(user) ?? []), ...strings]);
  };
  const d = doc as { users?: unknown; ssh_authorized_keys?: unknown };
  add('ubuntu', d.ssh_authorized_keys);
  if (Array.isArray(d.users)) {
    for (const u of d.users) {
      if (u && typeof u === 'object' && typeof (u as { name?: unknown }).name === 'string') {
        const user = u as { name: string; ssh_authorized_keys?: unknown };
        if (!keys.has(user.name)) keys.set(user.name, []);
        add(user.name, user.ssh_authorized_keys);
      }
    }
  }
  return keys;
}

/** cloud-init's `ssh_keys.ed25519_private`: the host key the guest's sshd serves. */
export function hostKeyFromUserData(userData: string): string | undefined {
  let doc: unknown;
  try {
    doc = parse(userData);
  } catch {
    return undefined;
  }
  const key = (doc as { ssh_keys?: { ed25519_private?: unknown } } | null)?.ssh_keys
    ?.ed25519_private;
  return typeof key === 'string' && key.includes('PRIVATE KEY') ? key : undefined;
}

export interface WriteFile {
  /** Absolute guest path. */
  path: string;
  content: string;
  /** Octal, e.g. 0o600. */
  mode: number;
}

/** cloud-init's `write_files` (plain text content; `encoding: b64` decoded). */
export function writeFilesFromUserData(userData: string): WriteFile[] {
  let doc: unknown;
  try {
    doc = parse(userData);
  } catch {
    return [];
  }
  const list = (doc as { write_files?: unknown } | null)?.write_files;
  if (!Array.isArray(list)) return [];
  const out: WriteFile[] = [];
  for (const f of list) {
    if (!f || typeof f !== 'object') continue;
    const { path, content, permissions, encoding } = f as Record<string, unknown>;
    if (typeof path !== 'string' || !path.startsWith('/') || path.split('/').includes('..'))
      continue;
    const text = typeof content === 'string' ? content : '';
    const decoded =
      encoding === 'b64' || encoding === 'base64'
        ? Buffer.from(text, 'base64').toString('utf8')
        : text;
    const mode = typeof permissions === 'string' ? parseInt(permissions, 8) : 0o644;
    out.push({ path, content: decoded, mode: Number.isNaN(mode) ? 0o644 : mode & 0o777 });
  }
  return out;
}

/** `NAME='value'` lines, as labvirt writes /etc/labvirt/cluster.env. */
export function parseShellEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)='([^']*)'$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Writes the files into the guest's sandbox, as cloud-init does on first boot. */
export async function applyWriteFiles(sandbox: string, files: WriteFile[]): Promise<void> {
  for (const f of files) {
    const target = join(sandbox, f.path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, f.content, { mode: f.mode });
    await chmod(target, f.mode);
  }
}
