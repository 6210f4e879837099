import { Counter, Gauge, Registry } from 'prom-client';
import { RuntimeMetrics } from './runtime.js';
import { FIELD_DROP_REASONS, type FieldDropReason } from '../store/families.js';

/**
 * The exporter's own metrics: its counters and gauges in a prom-client registry, and the
 * process and runtime metrics; a few dozen series, rendered on every scrape.
 */
export interface Telemetry {
  readonly registry: Registry;
  /** Counts an HTTP answer of the Flashback API (flashback_exporter_api_requests_total). */
  countResponse(status: number): void;
  /** Counts a field the API added that the store does not publish (flashback_exporter_dropped_fields_total). */
  countDroppedField(reason: FieldDropReason): void;
  /** Records a configuration load or reload attempt, and when it succeeded. */
  configLoaded(ok: boolean, atMs: number): void;
  /** The exposition text of all of them, as they are now. */
  render(): Promise<string>;
  /** Stops the runtime monitors (event-loop delay, GC observer). */
  close(): void;
}

/** How the exporter's own metrics are set up: its version label, and whether the process's are included. */
export interface TelemetryOptions {
  readonly version: string;
  /** Include the process_* and nodejs_* metrics (left out of --once output). */
  readonly processMetrics: boolean;
}

/** Registers the exporter's own metrics on a fresh registry; nothing global is touched. */
export function createTelemetry(options: TelemetryOptions): Telemetry {
  const registry = new Registry();
  const runtime = options.processMetrics ? new RuntimeMetrics() : undefined;
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
  const droppedFields = new Counter({
    name: 'flashback_exporter_dropped_fields_total',
    help: 'Numeric fields the API added to its time buckets that are not published as metrics, by reason; a field is counted when it is first dropped.',
    labelNames: ['reason'],
    registers: [registry],
  });
  // Every reason from the start, so that increase() sees the first drop.
  for (const reason of FIELD_DROP_REASONS) droppedFields.inc({ reason }, 0);
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
  // The registry's text changes only when one of its few metrics does: it is rendered again
  // then, not on every scrape. Exact, unlike the process metrics, which move all the time.
  let changes = 0;
  let rendered: { readonly at: number; readonly text: Promise<string> } | undefined;
  return {
    registry,
    countResponse: (status) => {
      apiRequests.inc({ code: String(status) });
      changes++;
    },
    countDroppedField: (reason) => {
      droppedFields.inc({ reason });
      changes++;
    },
    configLoaded: (ok, atMs) => {
      reloadSuccessful.set(ok ? 1 : 0);
      if (ok) reloadSuccessTimestamp.set(atMs / 1000);
      changes++;
    },
    render: async () => {
      if (rendered?.at !== changes) rendered = { at: changes, text: registry.metrics() };
      return (runtime === undefined ? '' : runtime.render()) + (await rendered.text);
    },
    close: () => runtime?.close(),
  };
}
