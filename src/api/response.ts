import * as z from 'zod';
import { FlashbackApiError } from './errors.js';

/** One time bucket: its start and every numeric field other than `ts`, in API order. */
export interface SeriesPoint {
  readonly ts: number;
  readonly fields: readonly (readonly [name: string, value: number])[];
}

/** A validated 200 response of GET /v2/stats/private-chat. */
export interface StatsResponse {
  readonly meta: { readonly start?: number; readonly end?: number; readonly timeBucketSize?: string };
  /** Numeric summary statistics, keyed as the API names them (`p50`, `stdDev`, ...). */
  readonly summary: readonly (readonly [name: string, value: number])[];
  readonly series: readonly SeriesPoint[];
}

const finite = z.number().refine(Number.isFinite, 'must be a finite number');

// The documented fields are required and typed; anything else the API adds is kept when
// numeric and ignored otherwise, so a new field shows up as a metric without a release.
const Point = z.looseObject({ ts: finite, tokensIn: finite, tokensOut: finite, requests: finite });
const Body = z.object({
  success: z.literal(true),
  meta: z.looseObject({
    start: finite.optional(),
    end: finite.optional(),
    timeBucketSize: z.string().optional(),
  }),
  summary: z.record(z.string(), z.unknown()),
  series: z.array(Point),
});

/** Validates a parsed JSON body; throws FlashbackApiError (api_error or invalid_response). */
export function parseStatsBody(body: unknown): StatsResponse {
  if (body !== null && typeof body === 'object' && !Array.isArray(body) && (body as { success?: unknown }).success === false) {
    const message = (body as { message?: unknown }).message;
    throw new FlashbackApiError('api_error', `the API reported a failure: ${typeof message === 'string' ? clip(message) : 'no message'}`);
  }
  const parsed = Body.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? z.core.toDotPath(issue.path) : 'body';
    throw new FlashbackApiError('invalid_response', `unexpected response body: ${where}: ${issue.message}`, { cause: parsed.error });
  }
  const { meta, summary, series } = parsed.data;
  return {
    meta: { start: meta.start, end: meta.end, timeBucketSize: meta.timeBucketSize },
    summary: numericEntries(summary),
    series: series.map((p) => ({ ts: p.ts, fields: numericEntries(p).filter(([k]) => k !== 'ts') })),
  };
}

function numericEntries(record: Record<string, unknown>): [string, number][] {
  return Object.entries(record).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1]));
}

/** Keeps messages from an upstream short enough for one log line. */
export function clip(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
