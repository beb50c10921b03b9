import { randomBytes } from 'node:crypto';
import type { Logger } from '../log/index.js';
import type { HostCluster } from './client.js';

export interface NamespaceEvent {
  namespace: string;
  type: 'Normal' | 'Warning';
  /** CamelCase, as Kubernetes reasons are (`Warm`, `ProvisionFailed`). */
  reason: string;
  message: string;
}

export interface NamespaceEventRecorderOptions {
  logger: Logger;
  /** Events a Namespace may get at once (default 10). */
  burst?: number;
  /** Then one more every this many milliseconds (default 10 s). */
  refillMs?: number;
  now?: () => number;
}

/** The API server caps an Event's message at 1 KiB. */
const MAX_MESSAGE = 1024;
const COMPONENT = 'labvirt';
const MAX_TRACKED = 10_000;

/**
 * Kubernetes Events on each env's Namespace, so `kubectl describe ns lab-…`
 * tells the env's story (state changes, failures). Rate-limited per
 * Namespace with a token bucket: a flapping env cannot flood the API server.
 * Recording never throws: an Event that cannot be written is logged and
 * dropped (the Namespace may be gone already).
 */
export class NamespaceEventRecorder {
  private readonly buckets = new Map<string, { tokens: number; at: number; uid?: string }>();
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(
    private readonly cluster: HostCluster,
    options: NamespaceEventRecorderOptions,
  ) {
    this.burst = options.burst ?? 10;
    this.refillMs = options.refillMs ?? 10_000;
    this.now = options.now ?? Date.now;
    this.log = options.logger;
  }

  /** Resolves true when written, false when rate-limited or refused. */
  async record(event: NamespaceEvent): Promise<boolean> {
    const now = this.now();
    const bucket = this.buckets.get(event.namespace) ?? { tokens: this.burst, at: now };
    const refill = Math.floor((now - bucket.at) / this.refillMs);
    if (refill > 0) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + refill);
      bucket.at += refill * this.refillMs;
    }
    this.buckets.set(event.namespace, bucket);
    // Envs come and go: keep the buckets of the most recent ones only.
    if (this.buckets.size > MAX_TRACKED) {
      this.buckets.delete(this.buckets.keys().next().value as string);
    }
    if (bucket.tokens <= 0) {
      this.log.debug({ namespace: event.namespace, reason: event.reason }, 'event rate-limited');
      return false;
    }
    bucket.tokens -= 1;
    try {
      // `kubectl describe ns` matches Events by the Namespace's uid.
      bucket.uid ??= (await this.cluster.getNamespace(event.namespace))?.metadata?.uid;
      if (!bucket.uid) return false;
      const time = new Date(now).toISOString();
      await this.cluster.createEvent(event.namespace, {
        metadata: {
          name: `${event.namespace}.${randomBytes(8).toString('hex')}`,
          namespace: event.namespace,
        },
        involvedObject: {
          apiVersion: 'v1',
          kind: 'Namespace',
          name: event.namespace,
          uid: bucket.uid,
        },
        type: event.type,
        reason: event.reason,
        message: event.message.slice(0, MAX_MESSAGE),
        source: { component: COMPONENT },
        reportingComponent: COMPONENT,
        reportingInstance: process.env.HOSTNAME ?? COMPONENT,
        firstTimestamp: new Date(time),
        lastTimestamp: new Date(time),
        count: 1,
      });
      return true;
    } catch (err) {
      this.log.debug(
        { namespace: event.namespace, reason: event.reason, err: (err as Error).message },
        'event not recorded',
      );
      return false;
    }
  }

  /** Forgets a Namespace (its env is gone). */
  forget(namespace: string): void {
    this.buckets.delete(namespace);
  }
}
