import type { ParsedKey } from 'ssh2';
import { rejectAfter } from '../deadline/index.js';
import type { Logger } from '../log/index.js';
import { parseAuthorizedKey } from './keys.js';
import type { GatewaySession, SessionDirectory } from './gateway-api.js';

/** What a session id may look like (it is also the SSH user name). */
export const SESSION_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A lookup that failed (as opposed to one that found no session). */
export class LookupFailed extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * The gateway's login check, whatever carries the login (an SSH client, or
 * the web terminal bridge in the gateway's own process): the session lookup
 * with its retries, the reasons a login is refused, and their audit lines.
 */
export class GatewayLogin {
  private readonly retryBudgetMs: number;
  private readonly lookupTimeoutMs: number;
  private readonly parsedKeys = new WeakMap<GatewaySession, ParsedKey[]>();

  constructor(
    private readonly options: {
      directory: SessionDirectory;
      log?: Logger;
      audit?: Logger;
      now: () => number;
      /** How long a login may keep retrying a failing lookup. */
      retryBudgetMs: number;
      lookupTimeoutMs: number;
    },
  ) {
    this.retryBudgetMs = options.retryBudgetMs;
    this.lookupTimeoutMs = options.lookupTimeoutMs;
  }

  /** Asks the directory, again after short waits when it fails; throws LookupFailed when every try failed. */
  async lookup(connId: string, sessionId: string): Promise<GatewaySession | undefined> {
    const { log, now, directory } = this.options;
    const deadline = now() + this.retryBudgetMs;
    let wait = 250;
    for (let attempt = 0; ; attempt++, wait = Math.min(wait * 2, 2000)) {
      try {
        return await rejectAfter(
          directory.lookup(sessionId),
          this.lookupTimeoutMs,
          () => new Error(`no answer within ${this.lookupTimeoutMs} ms`),
        );
      } catch (err) {
        if (now() + wait >= deadline) {
          log?.warn(
            { connId, sessionId, attempts: attempt + 1, err: (err as Error).message },
            'session lookup failed; the student was told to retry',
          );
          throw new LookupFailed((err as Error).message);
        }
        log?.debug(
          { connId, sessionId, attempt: attempt + 1, err: (err as Error).message },
          'session lookup failed; trying again',
        );
        await sleep(wait);
      }
    }
  }

  /**
   * Why this login may not enter session `sessionId` (undefined: it may).
   * `holdsKey` says whether the credential is one of the session's keys;
   * the session's own refusal is told only to a holder of its key.
   */
  refusal(
    sessionId: string,
    s: GatewaySession | undefined,
    holdsKey: (keys: ParsedKey[]) => boolean,
  ): string | undefined {
    if (!s)
      return `there is no active lab session named ${sessionId} (it may have ended or not started yet)`;
    if (s.expiresAt.getTime() <= this.options.now())
      return `session ${sessionId} ended at ${s.expiresAt.toISOString()}`;
    if (!holdsKey(this.keysOf(s)))
      return `this key is not the one for session ${sessionId}; use the key file labvirt gave you (ssh -i <key file>)`;
    return s.refusal;
  }

  /**
   * The session's keys, parsed once per looked-up session (the directory
   * hands out the same object while it holds the session): OpenSSH asks
   * twice per login, once to offer the key and once to sign with it.
   */
  private keysOf(s: GatewaySession): ParsedKey[] {
    let keys = this.parsedKeys.get(s);
    if (!keys) {
      keys = s.publicKeys.map(parseAuthorizedKey).filter((k) => k !== undefined);
      this.parsedKeys.set(s, keys);
    }
    return keys;
  }

  /** Every refused login is audited (never with key material: a fingerprint at most). */
  auditRefused(line: {
    connId: string;
    sessionId: string;
    student?: string;
    source: string;
    key?: string;
    reason: string;
  }): void {
    this.options.audit?.warn({ audit: 'ssh.auth.refused', ...line }, 'ssh login refused');
  }

  /** A login that could not be checked (the lookup failed): what to tell the student, audited. */
  unavailable(err: unknown, line: { connId: string; sessionId: string; source: string }): string {
    this.options.audit?.warn(
      { audit: 'ssh.auth.unavailable', ...line, reason: 'session lookup failed' },
      'ssh login not checked: session lookup failed',
    );
    return err instanceof LookupFailed
      ? `labvirt could not look up session ${line.sessionId} just now (a temporary problem on our side); please try again in a few seconds`
      : 'labvirt could not check your login just now; please try again in a few seconds';
  }
}
