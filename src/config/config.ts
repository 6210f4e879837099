import { FILTER_KEYS, type FilterKey, type RawConfig } from './schema.js';
import { parseDuration, parseSize } from './duration.js';

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
      return {
        name: t.name,
        scope: t.scope,
        id: t.id,
        schedule: t.schedule ?? d.schedule,
        window: t.window ?? d.window,
        timeBucketSize,
        timeBucketSizeMs: parseDuration(timeBucketSize)!,
        bucket: t.bucket ?? d.bucket,
        summary: t.summary ?? d.summary,
        staleAfterMs: parseDuration(t.staleAfter ?? d.staleAfter)!,
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

/** Freezes an object graph, so a loaded config cannot drift from what was validated. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
