import * as z from 'zod';
import { FlashbackApiError } from './errors.js';

/**
 * One time bucket as the API sent it: `ts`, the documented counts, and whatever else the
 * API adds. Its numeric fields are read with `pointFields`, for the one bucket published.
 */
export interface SeriesPoint {
  readonly ts: number;
  readonly [field: string]: unknown;
}

/** A validated 200 response of GET /v2/stats/private-chat. */
export interface StatsResponse {
  readonly meta: { readonly start?: number | undefined; readonly end?: number | undefined; readonly timeBucketSize?: string | undefined };
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

/**
 * Validates a parsed JSON body; throws FlashbackApiError (api_error or invalid_response).
 *
 * A body that is plainly valid is taken as it is: checking the handful of documented fields
 * by hand costs nothing next to a schema parse, which copies every point (a third of a
 * poll's garbage). Anything else goes through the zod schema, which is the definition and
 * words the error; a property test holds the two to the same verdict and the same result.
 */
export function parseStatsBody(body: unknown): StatsResponse {
  if (isRecord(body) && body.success === false) {
    const message = body.message;
    throw new FlashbackApiError('api_error', `the API reported a failure: ${typeof message === 'string' ? clip(message) : 'no message'}`);
  }
  return parseStatsBodyFast(body) ?? parseStatsBodyWithSchema(body);
}

/** The schema's way: validates `body` against the zod schema, wording the first problem. */
export function parseStatsBodyWithSchema(body: unknown): StatsResponse {
  const parsed = Body.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? z.core.toDotPath(issue.path) : 'body';
    throw new FlashbackApiError('invalid_response', `unexpected response body: ${where}: ${issue.message}`, { cause: parsed.error });
  }
  const { meta, summary, series } = parsed.data;
  return { meta: { start: meta.start, end: meta.end, timeBucketSize: meta.timeBucketSize }, summary: numericEntries(summary), series };
}

/**
 * The fast way: the same result when `body` certainly passes the schema, undefined when it
 * may not (then the schema decides). It must never accept what the schema rejects.
 */
export function parseStatsBodyFast(body: unknown): StatsResponse | undefined {
  if (!isRecord(body) || body.success !== true) return undefined;
  const { meta, summary, series } = body;
  if (!isRecord(meta) || !isRecord(summary) || !Array.isArray(series)) return undefined;
  const { start, end, timeBucketSize } = meta;
  if ((start !== undefined && !isFinite(start)) || (end !== undefined && !isFinite(end))) return undefined;
  if (timeBucketSize !== undefined && typeof timeBucketSize !== 'string') return undefined;
  for (const point of series as unknown[]) {
    if (!isRecord(point) || !isFinite(point.ts) || !isFinite(point.tokensIn) || !isFinite(point.tokensOut) || !isFinite(point.requests)) return undefined;
  }
  return { meta: { start, end, timeBucketSize }, summary: numericEntries(summary), series: series as SeriesPoint[] };
}

/** A point's numeric fields other than `ts`, in the API's order; non-finite values dropped. */
export function pointFields(point: SeriesPoint): [name: string, value: number][] {
  const fields: [string, number][] = [];
  for (const key in point) {
    const value = point[key];
    if (key !== 'ts' && isFinite(value)) fields.push([key, value]);
  }
  return fields;
}

function numericEntries(record: Record<string, unknown>): [string, number][] {
  const entries: [string, number][] = [];
  for (const key in record) {
    const value = record[key];
    if (isFinite(value)) entries.push([key, value]);
  }
  return entries;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isFinite(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** Keeps messages from an upstream short enough for one log line. */
export function clip(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
