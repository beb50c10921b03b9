export { createMetrics, type CreateMetricsOptions, type Metrics } from './metrics.js';
