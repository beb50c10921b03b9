import { fingerprint } from './keys.js';

export class HostKeyMismatchError extends Error {
  readonly code = 'EHOSTKEYMISMATCH';
  constructor(
    readonly where: string,
    readonly pinned: string,
    readonly offered: string,
  ) {
    super(
      `host key of ${where} changed: pinned ${pinned}, offered ${offered}; refusing to connect (possible impersonation)`,
    );
    this.name = 'HostKeyMismatchError';
  }
}

/**
 * Trust on first use, per env: the first host key a guest shows is pinned
 * until the env is forgotten. Keyed by IP as well as node, because a VMI that
 * is replaced gets a new pod IP and a fresh disk (so a new host key) — a new
 * key at the same address is what we refuse.
 */
export class HostKeyPins {
  private readonly pins = new Map<string, Map<string, string>>();

  /** Returns undefined when accepted, or the error to report. */
  check(envId: string, where: string, key: Buffer): HostKeyMismatchError | undefined {
    let env = this.pins.get(envId);
    if (!env) this.pins.set(envId, (env = new Map()));
    const offered = fingerprint(key);
    const pinned = env.get(where);
    if (pinned === undefined) {
      env.set(where, offered);
      return undefined;
    }
    return pinned === offered ? undefined : new HostKeyMismatchError(where, pinned, offered);
  }

  pinned(envId: string, where: string): string | undefined {
    return this.pins.get(envId)?.get(where);
  }

  forget(envId: string): void {
    this.pins.delete(envId);
  }
}
