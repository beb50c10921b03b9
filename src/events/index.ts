import { EventEmitter } from 'node:events';

/** States of an environment, in lifecycle order (plus `failed`). */
export const ENV_STATES = [
  'provisioning',
  'booting',
  'warm',
  'claimed',
  'preparing',
  'active',
  'releasing',
  'deleted',
  'failed',
] as const;
export type EnvState = (typeof ENV_STATES)[number];

export type SessionEndReason = 'released' | 'expired' | 'failed' | 'cancelled';

/** Everything a student or operator can see happen. Front ends and metrics subscribe to these. */
export type LabvirtEvent =
  | {
      type: 'env.state';
      envId: string;
      flavor: string;
      from?: EnvState;
      to: EnvState;
      /** Set when `to` is `warm`: from provisioning start to warm. */
      provisionMs?: number;
      reason?: string;
      /** The session the env serves, on the claim's steps (claimed, preparing, active). */
      sessionId?: string;
    }
  | {
      type: 'env.failed';
      envId: string;
      flavor: string;
      attempt: number;
      willRetry: boolean;
      reason: string;
    }
  | { type: 'pool.capacity'; flavor: string; blocked: boolean; reason: string }
  | {
      type: 'session.queued';
      sessionId: string;
      student: string;
      labId: string;
      flavor: string;
      position: number;
      estimateSeconds: number;
    }
  | {
      type: 'session.ready';
      sessionId: string;
      student: string;
      labId: string;
      envId: string;
      /** From the start request to the student being let in. */
      claimLatencyMs: number;
      /** Time spent waiting in line for a warm env (0 when one was ready). */
      queueWaitMs: number;
    }
  | {
      type: 'session.moved';
      sessionId: string;
      student: string;
      fromEnvId: string;
      reason: string;
    }
  | {
      /**
       * A step of the lab's setup ran out of time: the guest is slow, not
       * broken. The step runs again on the same env with `retrySeconds`, and
       * so does every later step; a second timeout ends the session.
       */
      type: 'session.setup-slow';
      sessionId: string;
      student: string;
      labId: string;
      envId: string;
      /** The script's file name and the node it timed out on. */
      step: string;
      node: string;
      timeoutSeconds: number;
      retrySeconds: number;
    }
  | {
      type: 'session.warning';
      sessionId: string;
      student: string;
      expiresAt: string;
      minutesLeft: number;
    }
  | { type: 'session.extended'; sessionId: string; student: string; expiresAt: string }
  | {
      /**
       * A node's VM of an active session was replaced (a new VMI: host drain,
       * crash, restart): its disk is fresh and the student's work on it is
       * gone. Reported once per replacement; the session goes on.
       */
      type: 'session.node-restarted';
      sessionId: string;
      student: string;
      envId: string;
      node: string;
      /** When labvirt saw the replacement (RFC 3339). */
      at: string;
    }
  | {
      /**
       * A node of an active session is reachable at a newly recorded address
       * (a restarted node with the student's key back on it, or a node
       * recorded for a session that had no record of it), so gateways look
       * the session up again.
       */
      type: 'session.node-reachable';
      sessionId: string;
      student: string;
      envId: string;
      node: string;
    }
  | {
      type: 'session.ended';
      sessionId: string;
      student: string;
      labId: string;
      reason: SessionEndReason;
      detail?: string;
    }
  | {
      type: 'check.completed';
      sessionId: string;
      student: string;
      labId: string;
      passed: boolean;
      score: number;
      maxScore: number;
    }
  | {
      /** A student port the NodePort sync did not publish; reported once per port and reason. */
      type: 'sync.refused';
      envId: string;
      sessionId?: string;
      student?: string;
      /** `namespace/service` in the student's cluster. */
      service: string;
      port: number;
      protocol: string;
      reason: string;
      /** For the student, e.g. "web:80 not published: at most 5 ports per lab". */
      message: string;
    }
  | {
      /** The set of student ports published on the host changed (all of them, as they are now). */
      type: 'sync.published';
      envId: string;
      sessionId?: string;
      student?: string;
      ports: { service: string; port: number; protocol: string; address: string }[];
    }
  | {
      type: 'hint.revealed';
      sessionId: string;
      student: string;
      labId: string;
      index: number;
      total: number;
    };

export type LabvirtEventType = LabvirtEvent['type'];
export type EventOf<T extends LabvirtEventType> = Extract<LabvirtEvent, { type: T }>;

/**
 * The in-process event bus. Listeners must not throw into the emitter: a
 * failing subscriber (say, Slack being down) never breaks a provision.
 */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor(private readonly onListenerError?: (err: unknown, event: LabvirtEvent) => void) {
    this.emitter.setMaxListeners(100);
  }

  emit(event: LabvirtEvent): void {
    for (const listener of this.emitter.listeners('event')) {
      try {
        const result = (listener as (e: LabvirtEvent) => unknown)(event);
        if (result instanceof Promise) result.catch((err) => this.onListenerError?.(err, event));
      } catch (err) {
        this.onListenerError?.(err, event);
      }
    }
  }

  /** Subscribes to every event; returns the unsubscribe function. */
  onAny(listener: (event: LabvirtEvent) => void | Promise<void>): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }

  /** Subscribes to one event type; returns the unsubscribe function. */
  on<T extends LabvirtEventType>(
    type: T,
    listener: (event: EventOf<T>) => void | Promise<void>,
  ): () => void {
    return this.onAny((event) => {
      if (event.type === type) return listener(event as EventOf<T>);
    });
  }
}
