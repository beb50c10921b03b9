import type { EnvState } from '../events/index.js';

/**
 * Every Redis key labvirt's indexes use, and nothing else builds them. The
 * `{prefix}` hash tag keeps all of them in one Redis Cluster slot, so the
 * multi-key Lua scripts stay valid there too. Scripts get `base` and append
 * the same suffixes (see scripts/*.lua): change one, change both.
 */
export function storeKeys(prefix: string) {
  const base = `{${prefix}}:`;
  return {
    base,
    env: (envId: string) => `${base}env:${envId}`,
    /** The env's tool inventory from when it turned warm (src/sessions/integrity.ts). */
    envTools: (envId: string) => `${base}env-tools:${envId}`,
    envs: `${base}envs`,
    flavors: `${base}flavors`,
    stateSet: (flavor: string, state: EnvState) => `${base}state:${flavor}:${state}`,
    warm: (flavor: string) => `${base}warm:${flavor}`,
    session: (id: string) => `${base}session:${id}`,
    sessions: `${base}sessions`,
    student: (student: string) => `${base}student:${student}`,
    request: (requestId: string) => `${base}request:${requestId}`,
    line: (flavor: string) => `${base}line:${flavor}`,
    expiry: `${base}expiry`,
    provisionMs: (flavor: string) => `${base}provision-ms:${flavor}`,
    capacity: (flavor: string) => `${base}capacity:${flavor}`,
    initialized: `${base}initialized`,
    /** A session's Slack DM status message (channel, ts) and what was delivered to it. */
    slackMessage: (sessionId: string) => `${base}slack-message:${sessionId}`,
    /** Set while a status job of the session waits to start: later changes need no job of their own. */
    slackStatusQueued: (sessionId: string) => `${base}slack-status-queued:${sessionId}`,
    /** Held by the one replica editing a session's Slack messages right now. */
    slackLock: (sessionId: string) => `${base}slack-lock:${sessionId}`,
    /** The web terminal bridge's public key, which gateways accept for every active session. */
    bridgeKey: `${base}web-bridge-key`,
    /** A student's registered SSH public key. */
    studentPublicKey: (student: string) => `${base}student-key:${student}`,
    /** A student's recent session ids (live and ended), scored by creation time. */
    history: (student: string) => `${base}history:${student}`,
    /** A one-time private-key download, and its tombstone once taken. */
    keyLink: (token: string) => `${base}key-link:${token}`,
    keyLinkTaken: (token: string) => `${base}key-link-taken:${token}`,
    /** Marks that something (a signed request, a click) was seen, for replay refusal. */
    seen: (what: string) => `${base}seen:${what}`,
    /** Held while a check of the session runs (one at a time, across replicas). */
    checkLock: (sessionId: string) => `${base}check-lock:${sessionId}`,
    /** Requests counted in one rate-limit window. */
    rate: (what: string) => `${base}rate:${what}`,
    /** The latest failures (JSON lines), newest first, for operators. */
    failures: `${base}failures`,
    /** Operators' runtime warm targets per flavor (hash flavor → count), read by every replica. */
    targetOverrides: `${base}target-overrides`,
  };
}

export type StoreKeys = ReturnType<typeof storeKeys>;
