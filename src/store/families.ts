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

/**
 * The family for a numeric field the API added beyond the documented ones, named after the
 * field in snake case (`cachedTokens` → flashback_private_chat_cached_tokens). Undefined when
 * the name would be empty or would collide with a documented metric.
 */
export function extraFieldFamily(field: string): FamilyDef | undefined {
  const snake = field
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
  const name = DATA_PREFIX + snake;
  if (snake === '' || TAKEN.has(name)) return undefined;
  return { name, help: `The API's ${JSON.stringify(field)} field of the published time bucket, ${CACHED}`, type: 'gauge' };
}

/** The HELP and TYPE lines of a family, encoded once. */
export function headerBytes(def: FamilyDef): Buffer {
  return Buffer.from(familyHeader(def.name, def.help, def.type));
}
