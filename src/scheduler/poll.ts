import type { Logger } from 'pino';
import type { PollUnit } from '../config/units.js';
import type { ApiClient, StatsQuery } from '../api/client.js';
import { AbortedError, FlashbackApiError } from '../api/errors.js';
import { selectBucket } from '../api/bucket.js';
import { pointFields } from '../api/response.js';
import type { MetricStore } from '../store/store.js';

/** Runs one poll of one unit; resolves true when it succeeded. Never rejects. */
export type PollFn = (unit: PollUnit, options: { signal: AbortSignal; deadline: number }) => Promise<boolean>;

/** What a poll needs, passed in: it asks the API client, writes to the store and logs, and reaches for nothing else. */
export interface PollerDeps {
  readonly api: ApiClient;
  readonly store: MetricStore;
  readonly log: Logger;
  readonly now?: () => number;
}

/** The query parameters of a unit, named as in the API reference. */
export function queryOf(unit: PollUnit): StatsQuery {
  const t = unit.target;
  return { scope: t.scope, id: t.id, window: t.window, timeBucketSize: t.timeBucketSize, ...unit.filters };
}

/**
 * Creates the poll job: fetch, pick the bucket, publish. Like node_exporter's collector
 * execute(), a failure becomes a metric (target_up 0, errors_total{reason}) and one log
 * line, and never an exception: one unit's trouble cannot touch another's.
 */
export function createPoller(deps: PollerDeps): PollFn {
  const now = deps.now ?? Date.now;
  // A unit's child logger is made when it first has something to say: at ten thousand units,
  // loggers made up front for silent units would be megabytes of heap.
  const loggers = new WeakMap<PollUnit, Logger>();
  const logFor = (unit: PollUnit) => {
    let log = loggers.get(unit);
    if (log === undefined) loggers.set(unit, (log = deps.log.child({ target: unit.target.name, unit: unit.id })));
    return log;
  };

  return async (unit, { signal, deadline }) => {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const response = await deps.api.fetchStats(queryOf(unit), { signal, deadline });
      const at = now();
      const point = selectBucket(response, unit.target.bucket, unit.target.timeBucketSizeMs / 1000, at / 1000);
      deps.store.recordSuccess(unit.key, {
        at,
        durationSeconds: seconds(),
        bucket: point === undefined ? undefined : { ts: point.ts, fields: pointFields(point) },
        summary: unit.target.summary ? response.summary : undefined,
      });
      if (deps.log.isLevelEnabled('debug')) logFor(unit).debug({ duration_seconds: seconds(), points: response.series.length, bucket_ts: point?.ts }, 'poll succeeded');
      return true;
    } catch (err) {
      if (err instanceof AbortedError) return false;
      const failure =
        err instanceof FlashbackApiError
          ? err
          : new FlashbackApiError('invalid_response', `internal error: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      deps.store.recordFailure(unit.key, { at: now(), durationSeconds: seconds(), reason: failure.reason, message: failure.message });
      const fields = { reason: failure.reason, status: failure.status, duration_seconds: seconds(), err: failure.message };
      if (err === failure) logFor(unit).warn(fields, 'poll failed');
      else logFor(unit).error({ ...fields, stack: (err as Error)?.stack }, 'poll failed with an unexpected error');
      return false;
    }
  };
}
