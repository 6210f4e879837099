import { FILTER_KEYS, type FilterKey, type RawConfig } from './schema.js';
import { parseDuration, parseSize } from './duration.js';
import { scheduleProfile } from './schedule.js';

/** A target with every default merged in and durations in milliseconds. */
export interface TargetConfig {
  readonly name: string;
  readonly scope: 'org' | 'workspace' | 'repo';
  readonly id: string | undefined;
  readonly schedule: string;
  /** Sent to the API verbatim and exported as the `window` label. */
  readonly window: string;
  /** Sent to the API verbatim and exported as the `bucket_size` label. */
  readonly timeBucketSize: string;
  readonly timeBucketSizeMs: number;
  readonly bucket: 'latest' | 'complete';
  readonly summary: boolean;
  readonly staleAfterMs: number;
  /** Every filter as a list; an empty list means "not filtered". */
  readonly filters: Readonly<Record<FilterKey, readonly string[]>>;
  readonly labels: Readonly<Record<string, string>>;
}

/** The validated, frozen configuration the rest of the exporter runs on. */
export interface Config {
  readonly api: {
    readonly baseUrl: string;
    readonly tokenFile: string | undefined;
    readonly timeoutMs: number;
    readonly concurrency: number;
    readonly retries: number;
    readonly maxRequestsPerSecond: number | undefined;
    readonly maxResponseBytes: number;
  };
  readonly targets: readonly TargetConfig[];
  readonly limits: { readonly maxSeries: number };
}

/** Merges defaults into targets and converts units; the input has already passed the schema. */
export function resolveConfig(raw: RawConfig): Config {
  const d = raw.defaults;
  return deepFreeze({
    api: {
      baseUrl: raw.api.baseUrl.replace(/\/+$/, ''),
      tokenFile: raw.api.tokenFile,
      timeoutMs: parseDuration(raw.api.timeout)!,
      concurrency: raw.api.concurrency,
      retries: raw.api.retries,
      maxRequestsPerSecond: raw.api.maxRequestsPerSecond,
      maxResponseBytes: parseSize(raw.api.maxResponseBytes)!,
    },
    targets: raw.targets.map((t): TargetConfig => {
      const timeBucketSize = t.timeBucketSize ?? d.timeBucketSize;
      const schedule = t.schedule ?? d.schedule;
      const staleAfter = t.staleAfter ?? d.staleAfter;
      return {
        name: t.name,
        scope: t.scope,
        id: t.id,
        schedule,
        window: t.window ?? d.window,
        timeBucketSize,
        timeBucketSizeMs: parseDuration(timeBucketSize)!,
        bucket: t.bucket ?? d.bucket,
        summary: t.summary ?? d.summary,
        staleAfterMs: staleAfter === undefined ? defaultStaleAfterMs(schedule) : parseDuration(staleAfter)!,
        filters: Object.fromEntries(
          FILTER_KEYS.map((k) => {
            const v = t.filters?.[k];
            return [k, v === undefined ? [] : Array.isArray(v) ? [...new Set(v)] : [v]];
          }),
        ) as Record<FilterKey, string[]>,
        labels: { ...t.labels },
      };
    }),
    limits: { maxSeries: raw.limits.maxSeries },
  });
}

/**
 * staleAfter where the file sets none: 10m, or two of the schedule's longest intervals between
 * runs when that is longer, so that an hourly or weekly target keeps its data between polls
 * and through one failed poll.
 */
export function defaultStaleAfterMs(schedule: string): number {
  return Math.max(600_000, 2 * scheduleProfile(schedule).longestIntervalMs);
}

/** Freezes an object graph, so a loaded config cannot drift from what was validated. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
