import { parse } from 'yaml';

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
