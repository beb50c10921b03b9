import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ENV_STATES, type EventBus, type LabvirtEvent } from '../events/index.js';
import type { DependencyHealth } from '../log/outage.js';
import type { LabvirtService, PoolStatus } from '../sessions/types.js';

export interface Metrics {
  /** labvirt's own registry (never prom-client's global one). */
  readonly registry: Registry;
  /** Counts one request to the host cluster's API (called by the kube client). */
  observeKubeRequest(verb: string, resource: string): void;
  /** Reports this replica's open SSH gateway connections at each scrape. */
  watchGateway(gateway: { readonly connections: number }): void;
  /** Reports whether a dependency (`redis`, `host_api`) is reachable, at each scrape. */
  watchDependency(name: string, health: DependencyHealth): void;
  /** Reports whether this replica runs a role held under a lease (`nodeport-sync`), at each scrape. */
  watchLease(role: string, lease: { readonly running: boolean }): void;
  /** Unsubscribes from the event bus. */
  close(): void;
}

export interface CreateMetricsOptions {
  service: Pick<LabvirtService, 'poolStatus' | 'status'>;
  events: EventBus;
  /** Process metrics (cpu, memory, event loop); default true. */
  defaultMetrics?: boolean;
}

/** A scrape must answer even when Redis or the cluster hangs. */
const POOL_STATUS_TIMEOUT_MS = 5_000;

/**
 * labvirt's Prometheus metrics. Pool gauges are read from the service at
 * scrape time (the cluster-backed truth, not a running tally that drifts
 * across restarts); latencies and outcomes come from the event bus.
 */
export function createMetrics(options: CreateMetricsOptions): Metrics {
  const { service, events } = options;
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });

  // One poolStatus() call serves all pool gauges of a scrape.
  let inFlight: Promise<PoolStatus | undefined> | undefined;
  const snapshot = () => {
    if (inFlight) return inFlight;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), POOL_STATUS_TIMEOUT_MS);
    });
    inFlight = Promise.race([service.poolStatus(), timeout])
      .catch(() => undefined)
      .finally(() => {
        clearTimeout(timer);
        setImmediate(() => (inFlight = undefined));
      });
    return inFlight;
  };

  const statusUp = new Gauge({
    name: 'labvirt_pool_status_up',
    help: '1 when the last scrape could read the pool status, 0 when it failed',
    registers: [registry],
    async collect() {
      this.set((await snapshot()) ? 1 : 0);
    },
  });
  void statusUp;
  new Gauge({
    name: 'labvirt_pool_envs',
    help: 'Environments per flavor and state',
    labelNames: ['flavor', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of (await snapshot())?.flavors ?? []) {
        for (const state of ENV_STATES) this.set({ flavor: f.flavor, state }, f.counts[state] ?? 0);
      }
    },
  });
  new Gauge({
    name: 'labvirt_pool_target_warm',
    help: 'Warm environments the pool aims to keep per flavor (scheduled targets included)',
    labelNames: ['flavor'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of (await snapshot())?.flavors ?? [])
        this.set({ flavor: f.flavor }, f.targetWarm);
    },
  });
  new Gauge({
    name: 'labvirt_queue_waiting',
    help: 'Session requests waiting in line for a warm environment',
    labelNames: ['flavor'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of (await snapshot())?.flavors ?? []) this.set({ flavor: f.flavor }, f.waiting);
    },
  });
  new Gauge({
    name: 'labvirt_capacity_blocked',
    help: '1 when the host cluster cannot fit more VMs of this flavor',
    labelNames: ['flavor'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const f of (await snapshot())?.flavors ?? []) {
        this.set({ flavor: f.flavor }, f.capacityBlocked ? 1 : 0);
      }
    },
  });

  const claimLatency = new Histogram({
    name: 'labvirt_claim_latency_seconds',
    help: 'From a start request to the student being let in',
    buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800],
    registers: [registry],
  });
  const queueWait = new Histogram({
    name: 'labvirt_queue_wait_seconds',
    help: 'Time a start request spent waiting in line for a warm environment',
    buckets: [0, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600],
    registers: [registry],
  });
  const provisionDuration = new Histogram({
    name: 'labvirt_provision_duration_seconds',
    help: 'From provisioning start to a warm environment',
    labelNames: ['flavor'] as const,
    buckets: [5, 15, 30, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200],
    registers: [registry],
  });
  const envFailures = new Counter({
    name: 'labvirt_env_failures_total',
    help: 'Environment provisioning failures (retried or not)',
    labelNames: ['flavor'] as const,
    registers: [registry],
  });
  const sessions = new Counter({
    name: 'labvirt_sessions_total',
    help: 'Ended sessions by lab and outcome (released, expired, failed, cancelled)',
    labelNames: ['lab', 'outcome'] as const,
    registers: [registry],
  });
  const checks = new Counter({
    name: 'labvirt_checks_total',
    help: 'Checks run by lab and result (passed, failed)',
    labelNames: ['lab', 'result'] as const,
    registers: [registry],
  });
  const hints = new Counter({
    name: 'labvirt_hints_total',
    help: 'Hints revealed by lab',
    labelNames: ['lab'] as const,
    registers: [registry],
  });
  const kubeRequests = new Counter({
    name: 'labvirt_kube_requests_total',
    help: 'Requests to the host cluster API by verb and resource',
    labelNames: ['verb', 'resource'] as const,
    registers: [registry],
  });

  let gateway: { readonly connections: number } | undefined;
  new Gauge({
    name: 'labvirt_ssh_gateway_connections',
    help: "Open student SSH connections through this replica's gateway",
    registers: [registry],
    collect() {
      this.set(gateway?.connections ?? 0);
    },
  });

  // Read from this process's outage accounts (the same that write the
  // one-warning-an-outage log lines): what an alert should fire on.
  const dependencies = new Map<string, DependencyHealth>();
  new Gauge({
    name: 'labvirt_dependency_up',
    help: '0 while this process finds the dependency out of reach (redis, host_api), else 1',
    labelNames: ['dependency'] as const,
    registers: [registry],
    collect() {
      for (const [dependency, health] of dependencies)
        this.set({ dependency }, health.open ? 0 : 1);
    },
  });
  new Counter({
    name: 'labvirt_dependency_outages_total',
    help: 'Outages of a dependency (redis, host_api) this process has seen',
    labelNames: ['dependency'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [dependency, health] of dependencies) this.inc({ dependency }, health.outages);
    },
  });

  // Roles one replica at a time runs (src/redis/lease.ts): which replica has each.
  const leases = new Map<string, { readonly running: boolean }>();
  new Gauge({
    name: 'labvirt_lease_held',
    help: '1 while this replica runs a role that one replica at a time runs (nodeport-sync), else 0',
    labelNames: ['role'] as const,
    registers: [registry],
    collect() {
      for (const [role, lease] of leases) this.set({ role }, lease.running ? 1 : 0);
    },
  });

  const onEvent = async (event: LabvirtEvent): Promise<void> => {
    switch (event.type) {
      case 'session.queued':
        break;
      case 'session.ready':
        claimLatency.observe(event.claimLatencyMs / 1000);
        queueWait.observe(event.queueWaitMs / 1000);
        break;
      case 'env.state':
        if (event.to === 'warm' && event.provisionMs !== undefined) {
          provisionDuration.observe({ flavor: event.flavor }, event.provisionMs / 1000);
        }
        break;
      case 'env.failed':
        envFailures.inc({ flavor: event.flavor });
        break;
      case 'session.ended':
        sessions.inc({ lab: event.labId, outcome: event.reason });
        break;
      case 'check.completed':
        checks.inc({ lab: event.labId, result: event.passed ? 'passed' : 'failed' });
        break;
      case 'hint.revealed':
        hints.inc({ lab: event.labId });
        break;
      default:
        break;
    }
  };
  const unsubscribe = events.onAny(onEvent);

  return {
    registry,
    observeKubeRequest: (verb, resource) => kubeRequests.inc({ verb, resource }),
    watchGateway: (g) => void (gateway = g),
    watchDependency: (name, health) => void dependencies.set(name, health),
    watchLease: (role, lease) => void leases.set(role, lease),
    close: unsubscribe,
  };
}
