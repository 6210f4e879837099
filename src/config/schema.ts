import * as z from 'zod';
import { validateDetailed, type CronFieldError } from 'node-cron';
import { DURATION_PATTERN, SIZE_PATTERN, parseDuration, parseSize } from './duration.js';

// The schema is the single source of truth for the file format: validation, the error
// messages, the defaults and the published JSON Schema (config.schema.json) all come from it.
// Every object is strict, so a misspelt key is an error instead of a silently ignored setting.

/** Label names the exporter sets itself; a target's `labels` may not use them. */
export const RESERVED_LABELS: readonly string[] = Object.freeze([
  'target', 'scope', 'scope_id', 'window', 'bucket_size',
  'model', 'user_id', 'api_key_id', 'ai_llm_id',
  'stat', 'reason', 'code', 'version', 'node_version',
  // Prometheus attaches these at scrape time and would rename ours to exported_*.
  'job', 'instance',
]);

/** The filter keys of the API, in the order they appear in labels and queries. */
export const FILTER_KEYS = ['model', 'userId', 'apiKeyId', 'aiLlmId'] as const;
export type FilterKey = (typeof FILTER_KEYS)[number];

const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TARGET_NAME_RE = /^[A-Za-z0-9_.-]+$/;

// Messages are written for the person fixing the file: what is wanted, not what zod saw.
// A missing required key always reads "is required".
function expect(message: string) {
  return (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : message);
}

const duration = (what = 'a duration like 30s, 5m, 1h or 7d', atMost?: string) =>
  z
    .string({ error: expect(`must be ${what}`) })
    .superRefine((s, ctx) => {
      const ms = parseDuration(s);
      // `0s` is a duration, just not a usable one: say what is wrong with it.
      if (ms === undefined) ctx.addIssue({ code: 'custom', message: `must be ${what}` });
      else if (ms === 0) ctx.addIssue({ code: 'custom', message: 'must be greater than zero' });
      else if (atMost !== undefined && ms > parseDuration(atMost)!) ctx.addIssue({ code: 'custom', message: `must be at most ${atMost}` });
    })
    .meta({ pattern: DURATION_PATTERN });

// node-cron words a bad field "61 is a invalid expression for minute"; ours is plainer.
const CRON_FIELD_NAMES: Readonly<Record<string, string>> = {
  second: 'second', minute: 'minute', hour: 'hour', dayOfMonth: 'day of the month', month: 'month', dayOfWeek: 'day of the week',
};

function cronFieldError(e: CronFieldError): string {
  const name = CRON_FIELD_NAMES[e.field];
  return name !== undefined && e.value !== undefined && e.message.includes(' is a invalid expression for ') ? `${e.value} is not a valid ${name}` : e.message;
}

const cronExpression = z
  .string({ error: expect('must be a cron expression string, e.g. "0 * * * * *"') })
  .superRefine((expr, ctx) => {
    const result = validateDetailed(expr);
    if (!result.valid) {
      const why = result.errors.map(cronFieldError).join('; ');
      ctx.addIssue({ code: 'custom', message: `must be a cron expression (5 fields, or 6 with seconds): ${why}` });
    }
  });

const size = z
  .union([z.int().nonnegative(), z.string().meta({ pattern: SIZE_PATTERN })], {
    error: expect('must be a byte count or a size like 512KiB or 8MiB'),
  })
  .refine((v) => (parseSize(v) ?? 0) > 0, { error: 'must be a byte count or a size like 512KiB or 8MiB, greater than zero' });

const nonEmptyString = (what: string) =>
  z.string({ error: expect(`must be ${what}`) }).min(1, { error: 'must not be empty' });

const filterValue = z.union(
  [nonEmptyString('a string'), z.array(nonEmptyString('a string')).min(1, { error: 'must not be an empty list' })],
  { error: expect('must be a string or a list of strings') },
);

/** Keys a target may override; in `defaults` they all have a value. */
export const pollSettings = {
  schedule: cronExpression.describe('node-cron expression: 5 fields, or 6 with seconds first'),
  window: duration('a window like 24h, 7d or 30d').describe('Time window the API aggregates over'),
  timeBucketSize: duration('a bucket size like 1h or 1d').describe('Size of each time bucket'),
  bucket: z
    .enum(['latest', 'complete'], { error: expect('must be one of latest, complete') })
    .describe('latest: the newest bucket; complete: the newest bucket that has ended by meta.end'),
  summary: z.boolean({ error: expect('must be true or false') }).describe("Also publish the response's summary statistics"),
  staleAfter: duration().describe(
    "Drop a unit's data series when not refreshed for this long; at least the longest interval between runs of the schedule. " +
      'Unset: 10m, or twice that interval when longer',
  ),
};

const filters = z
  .strictObject(
    Object.fromEntries(FILTER_KEYS.map((k) => [k, filterValue.optional()])) as Record<FilterKey, z.ZodOptional<typeof filterValue>>,
  )
  .describe('A list polls each value; several lists poll their product');

const labelName = z
  .string()
  .regex(LABEL_NAME_RE, { error: 'is not a valid label name: use [a-zA-Z_][a-zA-Z0-9_]*' })
  .refine((name) => !name.startsWith('__'), { error: 'is not a valid label name: names starting with __ are reserved' })
  .refine((name) => !RESERVED_LABELS.includes(name), {
    error: `clashes with a label the exporter sets itself (${RESERVED_LABELS.join(', ')})`,
  });

const labels = z
  .record(labelName, z.string({ error: expect('must be a string (quote numbers and booleans)') }))
  .describe("Constant labels added to this target's series");

const target = z
  .strictObject({
    name: z
      .string({ error: expect('must be a string') })
      .regex(TARGET_NAME_RE, { error: 'must match [A-Za-z0-9_.-]+' })
      .describe('Unique name; becomes the `target` label'),
    scope: z.enum(['org', 'workspace', 'repo'], { error: expect('must be one of org, workspace, repo') }),
    id: nonEmptyString('a string').optional().describe('Required when scope is workspace or repo'),
    ...Object.fromEntries(Object.entries(pollSettings).map(([k, v]) => [k, v.optional()])),
    filters: filters.optional(),
    labels: labels.optional(),
  })
  .superRefine(
    (t, ctx) => {
      if (t === null || typeof t !== 'object') return;
      if ((t.scope === 'workspace' || t?.scope === 'repo') && t.id === undefined) {
        ctx.addIssue({ code: 'custom', path: ['id'], message: `is required when scope is ${t.scope}` });
      }
    },
    { when: () => true },
  ) as unknown as z.ZodType<RawTarget>;

/**
 * The configuration file as written (durations still strings, defaults not yet merged).
 * Checks between a target's settings and the defaults are in cross-field.ts: zod skips its
 * refinements once any field fails outright, and they would hide behind an unrelated problem.
 */
export const ConfigSchema = z
  .strictObject({
    api: z
      .strictObject({
        baseUrl: z
          .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
          .default('https://backend.flashback.tech'),
        tokenFile: nonEmptyString('a file path')
          .optional()
          .describe('File holding the API token, re-read once a second; else the env var FLASHBACK_TOKEN'),
        // It becomes a timer, and Node fires one of more than 2^31-1 ms (24.8 days) after 1 ms:
        // every request would time out at once. No answer is worth waiting 10 minutes for.
        timeout: duration(undefined, '10m').default('15s').describe('Per request; at most 10m'),
        concurrency: z
          .int({ error: expect('must be a whole number') })
          .min(1, { error: 'must be at least 1' })
          .max(1024, { error: 'must be at most 1024' })
          .default(4)
          .describe('Requests in flight at most, across all targets'),
        retries: z
          .int({ error: expect('must be a whole number') })
          .min(0, { error: 'must not be negative' })
          .max(10, { error: 'must be at most 10' })
          .default(2)
          .describe('Retries within a poll for network errors, 5xx and 429'),
        maxRequestsPerSecond: z
          .number({ error: expect('must be a number') })
          .positive({ error: 'must be greater than zero' })
          // Slower than this, the wait for a turn could pass Node's 24.8-day timer limit, which
          // fires at once instead; and no schedule polls that rarely.
          .min(0.001, { error: 'must be at least 0.001 (one request every 1000 s)' })
          .optional()
          .describe('Upper bound on requests started per second, across all targets'),
        maxResponseBytes: size.default('8MiB').describe('A larger response body is cut off and counted as too_large'),
      })
      .prefault({}),
    defaults: z
      .strictObject({
        schedule: pollSettings.schedule.default('0 * * * * *'),
        window: pollSettings.window.default('24h'),
        timeBucketSize: pollSettings.timeBucketSize.default('1h'),
        bucket: pollSettings.bucket.default('latest'),
        summary: pollSettings.summary.default(true),
        // No fixed default: it depends on each target's schedule (see resolveConfig).
        staleAfter: pollSettings.staleAfter.optional(),
      })
      .prefault({})
      .describe('Every key here can be overridden per target'),
    targets: z
      .array(target, { error: expect('must be a list of targets') })
      .min(1, { error: 'must list at least one target' })
      .superRefine(
        (targets, ctx) => {
          if (!Array.isArray(targets)) return;
          const seen = new Map<unknown, number>();
          targets.forEach((t, i) => {
            if (typeof t?.name !== 'string') return;
            const first = seen.get(t.name);
            if (first !== undefined) {
              ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicates the name of targets[${first}]` });
            } else {
              seen.set(t.name, i);
            }
          });
        },
        // Run even when some target is invalid elsewhere, so every problem is reported at once.
        { when: () => true },
      ),
    limits: z
      .strictObject({
        maxSeries: z
          .int({ error: expect('must be a whole number') })
          .min(1, { error: 'must be at least 1' })
          .default(100_000)
          .describe('Refuse a configuration whose poll units would publish more series than this'),
      })
      .prefault({}),
  });

/** A target as written in the file. */
export interface RawTarget {
  name: string;
  scope: 'org' | 'workspace' | 'repo';
  id?: string;
  schedule?: string;
  window?: string;
  timeBucketSize?: string;
  bucket?: 'latest' | 'complete';
  summary?: boolean;
  staleAfter?: string;
  filters?: Partial<Record<FilterKey, string | string[]>>;
  labels?: Record<string, string>;
}

/** The configuration as the schema has checked it, before cross-field checks and defaults resolve it into a Config. */
export type RawConfig = z.output<typeof ConfigSchema>;
