import { isDeepStrictEqual } from 'node:util';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { formatProblem, type LoadResult } from '../config/load.js';
import { expandUnits, type PollUnit, type Sharding } from '../config/units.js';
import { createApiClient } from '../api/client.js';
import type { TokenSource } from '../api/token.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { createPoller, type PollFn } from '../scheduler/poll.js';
import { MetricStore } from '../store/store.js';
import { createTelemetry, type Telemetry } from '../telemetry/telemetry.js';
import { createHandler, type ReloadOutcome } from '../http/server.js';
import { TurnBudget } from '../loop/turns.js';

/** Everything the daemon is built from; main.ts fills it from flags, tests from fixtures. */
export interface ExporterOptions {
  readonly config: Config;
  readonly log: Logger;
  readonly version: string;
  /** Re-reads the configuration for a reload (SIGHUP, POST /-/reload). */
  readonly loadConfig: () => Promise<LoadResult>;
  /** The token source for an api section; called again when a reload changes it. */
  readonly tokenSource: (api: Config['api']) => Promise<TokenSource>;
  readonly sharding?: Sharding;
  readonly telemetryPath?: string;
  readonly enableLifecycle?: boolean;
  /** Include process_* and nodejs_* metrics (not in --once output). */
  readonly processMetrics?: boolean;
  /** The HTTP client pool for an api section; an undici Agent with keep-alive by default. */
  readonly dispatcher?: (api: Config['api']) => Dispatcher;
  readonly now?: () => number;
}

/** The assembled exporter: one store, one scheduler, and the HTTP handler that serves them. */
export interface Exporter {
  readonly store: MetricStore;
  readonly telemetry: Telemetry;
  readonly handler: ReturnType<typeof createHandler>;
  /** Starts polling: every unit once at once, then on its schedule. */
  start(): Promise<void>;
  /** Polls every unit once without scheduling; resolves true when every poll succeeded. */
  pollOnce(): Promise<boolean>;
  /** Loads the configuration again and applies it; a bad one leaves the running one in place. */
  reload(): Promise<ReloadOutcome>;
  /** Stops scheduling, aborts requests in flight and closes connections to the API. */
  stop(): Promise<void>;
}

interface ApiGeneration {
  readonly settings: Config['api'];
  readonly dispatcher: Dispatcher;
  readonly poll: PollFn;
}

/**
 * Wires config → scheduler → api → store → http for the daemon, --once and the tests, with
 * every dependency passed in: nothing here is global, so a test builds the whole exporter
 * in-process against a fake API on loopback.
 */
export async function createExporter(options: ExporterOptions): Promise<Exporter> {
  const { log } = options;
  const now = options.now ?? Date.now;
  const sharding = options.sharding ?? { shard: 0, totalShards: 1 };
  const telemetry = createTelemetry({ version: options.version, processMetrics: options.processMetrics ?? true });
  // One share of each event-loop turn for the long jobs (parsing answers, rebuilding the
  // snapshot, sending scrapes), so that running at once they still yield within it.
  const turns = new TurnBudget();
  const store = new MetricStore({
    now,
    turns,
    // A field left out is said where each reader looks: by name in the log, by reason in a counter to alert on.
    onFieldDropped: (dropped) => {
      telemetry.countDroppedField(dropped.reason);
      log.warn(dropped, 'not publishing a field the API added to its time buckets');
    },
  });
  const makeDispatcher =
    options.dispatcher ??
    ((api: Config['api']) => new Agent({ connections: api.concurrency, keepAliveTimeout: 30_000, connect: { timeout: api.timeoutMs } }));

  const buildApi = async (settings: Config['api']): Promise<ApiGeneration> => {
    const dispatcher = makeDispatcher(settings);
    const api = createApiClient({
      baseUrl: settings.baseUrl,
      dispatcher,
      token: await options.tokenSource(settings),
      timeoutMs: settings.timeoutMs,
      concurrency: settings.concurrency,
      retries: settings.retries,
      maxResponseBytes: settings.maxResponseBytes,
      maxRequestsPerSecond: settings.maxRequestsPerSecond,
      userAgent: `flashback-exporter/${options.version}`,
      onResponse: (status) => telemetry.countResponse(status),
      onRetry: (err, attempt, delayMs) => log.debug({ reason: err.reason, attempt, delay_ms: delayMs }, 'retrying a transient failure'),
      turns,
    });
    return { settings, dispatcher, poll: createPoller({ api, store, log, now }) };
  };

  let config = options.config;
  let api = await buildApi(config.api);
  // The scheduler calls through `api`, so a reload that changes the api section swaps the
  // client for new polls while polls in flight finish on the old one.
  // Twice the request slots: a poll is always waiting when a request finishes, and the rest
  // of a large round waits unstarted, marked with its round, not as a started request.
  const scheduler = new Scheduler({ poll: (unit, o) => api.poll(unit, o), log, now, maxActive: () => api.settings.concurrency * 2 });
  let units = expandUnits(config, sharding);

  const specs = (list: readonly PollUnit[]) =>
    list.map((u) => ({ key: u.key, id: u.id, unitLabels: u.unitLabels, dataLabels: u.dataLabels, staleAfterMs: u.target.staleAfterMs }));
  const apply = (next: readonly PollUnit[]) => {
    store.setUnits(specs(next));
    return scheduler.setUnits(next);
  };
  const loaded = () => telemetry.configLoaded(true, now());
  loaded();

  const reload = async (): Promise<ReloadOutcome> => {
    const result = await options.loadConfig();
    if (!result.ok) {
      telemetry.configLoaded(false, now());
      for (const problem of result.problems) log.error({ problem: formatProblem(problem) }, 'configuration reload failed; keeping the running configuration');
      return { ok: false, error: result.problems.map(formatProblem).join('\n') };
    }
    if (!isDeepStrictEqual(result.config.api, config.api)) {
      let next: ApiGeneration;
      try {
        next = await buildApi(result.config.api);
      } catch (err) {
        telemetry.configLoaded(false, now());
        const error = `cannot use the new api section: ${(err as Error).message}`;
        log.error({ err: error }, 'configuration reload failed; keeping the running configuration');
        return { ok: false, error };
      }
      const old = api;
      api = next;
      void old.dispatcher.close().catch(() => {});
    }
    config = result.config;
    units = expandUnits(config, sharding);
    const changes = apply(units);
    loaded();
    log.info({ ...changes, units: units.length }, 'configuration reloaded');
    return { ok: true };
  };

  const handler = createHandler({
    store,
    ownMetrics: telemetry.render,
    telemetryPath: options.telemetryPath ?? '/metrics',
    version: options.version,
    log,
    enableLifecycle: options.enableLifecycle ?? false,
    reload,
    now,
    turns,
  });

  return {
    store,
    telemetry,
    handler,
    start: async () => {
      const changes = apply(units);
      log.info({ units: changes.added, targets: config.targets.length, shard: sharding.shard, total_shards: sharding.totalShards }, 'polling started');
    },
    pollOnce: async () => {
      store.setUnits(specs(units));
      const controller = new AbortController();
      const results = await Promise.all(units.map((u) => api.poll(u, { signal: controller.signal, deadline: Number.POSITIVE_INFINITY })));
      return results.every(Boolean);
    },
    reload,
    stop: async () => {
      await scheduler.stop();
      await api.dispatcher.destroy();
      telemetry.close();
    },
  };
}
