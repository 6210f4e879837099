import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

// Default metrics left out. prom-client exports three "current count" gauges with a `_total`
// suffix, which `promtool check metrics` rightly rejects; their unsuffixed twins carry the
// same values. nodejs_eventloop_lag_seconds waits for an event-loop turn on every scrape to
// take one sample, which the nodejs_eventloop_lag_{min,mean,max,stddev,p50,p90,p99}_seconds
// histogram summary already covers, continuously and without delaying the scrape.
const LEFT_OUT = new Set([
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
  'nodejs_eventloop_lag_seconds',
]);

/** The exporter's process-wide metrics: few series, rendered by prom-client per scrape. */
export interface Telemetry {
  readonly registry: Registry;
  readonly apiRequests: Counter<'code'>;
  readonly reloadSuccessful: Gauge;
  readonly reloadSuccessTimestamp: Gauge;
}

export interface TelemetryOptions {
  readonly version: string;
  /** Include the process_* and nodejs_* metrics (left out of --once output). */
  readonly processMetrics: boolean;
}

/** Registers the exporter's own metrics on a fresh registry; nothing global is touched. */
export function createTelemetry(options: TelemetryOptions): Telemetry {
  const registry = new Registry();
  if (options.processMetrics) {
    const scratch = new Registry();
    collectDefaultMetrics({ register: scratch });
    // getMetricsAsArray() returns the metric instances; its typing says MetricObject.
    for (const metric of scratch.getMetricsAsArray()) {
      if (!LEFT_OUT.has(metric.name)) registry.registerMetric(metric as unknown as Metric);
    }
  }
  new Gauge({
    name: 'flashback_exporter_build_info',
    help: 'A metric with a constant 1 value labeled by the version of the exporter and of Node.js it runs on.',
    labelNames: ['version', 'node_version'],
    registers: [registry],
  }).set({ version: options.version, node_version: process.version }, 1);
  const apiRequests = new Counter({
    name: 'flashback_exporter_api_requests_total',
    help: 'HTTP requests made to the Flashback API, by response status code.',
    labelNames: ['code'],
    registers: [registry],
  });
  const reloadSuccessful = new Gauge({
    name: 'flashback_exporter_config_last_reload_successful',
    help: 'Whether the last configuration reload attempt was successful.',
    registers: [registry],
  });
  const reloadSuccessTimestamp = new Gauge({
    name: 'flashback_exporter_config_last_reload_success_timestamp_seconds',
    help: 'Unix time of the last successful configuration load.',
    registers: [registry],
  });
  return { registry, apiRequests, reloadSuccessful, reloadSuccessTimestamp };
}
