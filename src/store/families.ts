import { familyHeader } from './exposition.js';

/** A metric family's name, help text and type: one `# HELP`/`# TYPE` block in the output. */
export interface FamilyDef {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
}

const CACHED = 'cached from the last successful poll.';

/** The published bucket's documented fields and the metric each becomes. */
export const FIELD_FAMILIES: Readonly<Record<string, FamilyDef>> = Object.freeze({
  tokensIn: {
    name: 'flashback_private_chat_input_tokens',
    help: `Input tokens of private chats in the published time bucket, ${CACHED}`,
    type: 'gauge',
  },
  tokensOut: {
    name: 'flashback_private_chat_output_tokens',
    help: `Output tokens of private chats in the published time bucket, ${CACHED}`,
    type: 'gauge',
  },
  requests: {
    name: 'flashback_private_chat_requests',
    help: `Private-chat requests in the published time bucket, ${CACHED}`,
    type: 'gauge',
  },
});

// The fixed families beside the bucket's fields: their names are the exporter's interface, which
// dashboards and alert rules depend on.
export const BUCKET_TIMESTAMP: FamilyDef = {
  name: 'flashback_private_chat_bucket_timestamp_seconds',
  help: `Start of the published time bucket (the API's ts) as a Unix timestamp, ${CACHED}`,
  type: 'gauge',
};

export const WINDOW_STAT: FamilyDef = {
  name: 'flashback_private_chat_window_stat',
  help: `Statistic of the API's summary over the whole window, keyed by the API's name in the stat label, ${CACHED}`,
  type: 'gauge',
};

export const TARGET_UP: FamilyDef = {
  name: 'flashback_exporter_target_up',
  help: 'Whether the last poll of this unit succeeded (1) or failed (0).',
  type: 'gauge',
};

export const LAST_SUCCESS: FamilyDef = {
  name: 'flashback_exporter_last_success_timestamp_seconds',
  help: "Unix time of this unit's last successful poll.",
  type: 'gauge',
};

export const POLL_DURATION: FamilyDef = {
  name: 'flashback_exporter_poll_duration_seconds',
  help: "Duration of this unit's last poll, retries included.",
  type: 'gauge',
};

export const POLL_ERRORS: FamilyDef = {
  name: 'flashback_exporter_poll_errors_total',
  help: 'Failed polls of this unit, by reason.',
  type: 'counter',
};

const DATA_PREFIX = 'flashback_private_chat_';
const TAKEN = new Set([...Object.values(FIELD_FAMILIES), BUCKET_TIMESTAMP, WINDOW_STAT].map((f) => f.name));

/** Why a numeric field the API added is not published: the `reason` it is counted under. */
export const FIELD_DROP_REASONS = ['invalid_name', 'name_taken', 'too_many_fields'] as const;
export type FieldDropReason = (typeof FIELD_DROP_REASONS)[number];

/** A numeric field the API added that gets no metric, and why, in words for the log. */
export interface DroppedField {
  readonly field: string;
  /** The metric it would have become, if any. */
  readonly metric: string | undefined;
  readonly reason: FieldDropReason;
  readonly why: string;
}

// A name made from a field the API added must pass `promtool check metrics` as a gauge's, or the
// whole exposition fails linting, and must not mean something else to Prometheus: `_total`
// reads as a counter to rate(), `_count` and `_bucket` as a histogram's series. The lists are
// client_golang's promlint (what promtool runs), plus the suffixes OpenMetrics keeps for other
// types' samples. Units are not converted: what unit an unknown field is in is guesswork.
const RESERVED_SUFFIXES = new Set(['total', 'created', 'count', 'sum', 'bucket', 'gcount', 'gsum', 'info']);
const TYPE_WORDS = new Set(['counter', 'gauge', 'histogram', 'summary']);
const ABBREVIATED_UNITS = new Set(['s', 'ms', 'us', 'ns', 'sec', 'b', 'kb', 'mb', 'gb', 'tb', 'pb', 'm', 'h', 'd']);
// Each unit promlint knows, with its base unit; a name may carry a base unit only, unprefixed.
const BASE_UNITS = new Map(
  Object.entries({
    seconds: ['seconds', 'minutes', 'hours', 'days', 'weeks'],
    bytes: ['bytes', 'bits'],
    meters: ['meters', 'inches', 'yards', 'miles'],
    celsius: ['celsius', 'fahrenheit', 'rankine'],
    kelvin: ['kelvin', 'kelvins'],
    grams: ['grams', 'pounds', 'ounces'],
    joules: ['joules', 'calories'],
    metres: ['metres'],
    amperes: ['amperes'],
    volts: ['volts'],
  }).flatMap(([base, units]) => units.map((unit) => [unit, base] as const)),
);
const UNIT_PREFIXES = ['pico', 'nano', 'micro', 'milli', 'centi', 'deci', 'deca', 'hecto', 'kilo', 'kibi', 'mega', 'mibi', 'giga', 'gibi', 'tera', 'tebi', 'peta', 'pebi'];

/** What promtool or Prometheus would hold against a gauge of this snake-case name, or undefined. */
function nameProblem(snake: string): string | undefined {
  const words = snake.split('_');
  const last = words.at(-1)!;
  if (RESERVED_SUFFIXES.has(last)) return `ends in _${last}, a suffix Prometheus keeps for other metric types`;
  for (const word of words) {
    if (TYPE_WORDS.has(word)) return `names the metric type ${word}`;
    if (ABBREVIATED_UNITS.has(word)) return `has the abbreviated unit ${word}`;
    const prefix = UNIT_PREFIXES.find((p) => word.startsWith(p) && BASE_UNITS.has(word.slice(p.length)));
    const base = BASE_UNITS.get(word.slice(prefix?.length ?? 0));
    if (base !== undefined && base !== word) return `has the unit ${word}, not the base unit ${base}`;
  }
  return undefined;
}

/**
 * The family for a numeric field the API added beyond the documented ones, named after the
 * field in snake case (`cachedTokens` → flashback_private_chat_cached_tokens); or why it gets
 * none: the name would be empty, fail promtool's lint, or be a documented metric's.
 */
export function extraFieldFamily(field: string): FamilyDef | DroppedField {
  const snake = field
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
  if (snake === '') return { field, metric: undefined, reason: 'invalid_name', why: 'has no letter or digit to name a metric after' };
  const name = DATA_PREFIX + snake;
  const problem = nameProblem(snake);
  if (problem !== undefined) return { field, metric: name, reason: 'invalid_name', why: problem };
  if (TAKEN.has(name)) return { field, metric: name, reason: 'name_taken', why: 'is the name of a documented metric' };
  return { name, help: `The API's ${JSON.stringify(field)} field of the published time bucket, ${CACHED}`, type: 'gauge' };
}

/** The HELP and TYPE lines of a family, encoded once. */
export function headerBytes(def: FamilyDef): Buffer {
  return Buffer.from(familyHeader(def.name, def.help, def.type));
}
