import type { Config } from '../config/index.js';
import type { EventBus } from '../events/index.js';
import type { HostCluster } from '../kube/client.js';
import type { Labs } from '../labs/index.js';
import type { Logger } from '../log/index.js';
import type { Executor } from '../ssh/index.js';
import type { Store } from '../store/index.js';
import type { JobQueues } from './queues.js';

/** What the pool's reconcilers and job handlers work with. */
export interface PoolContext {
  config: Config;
  store: Store;
  cluster: HostCluster;
  queues: JobQueues;
  executor: Executor;
  events: EventBus;
  labs: Labs;
  log: Logger;
  now(): number;
}
