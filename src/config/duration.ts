// Prometheus-style durations (`30s`, `5m`, `1h`, `7d`, `1h30m`), as in
// prometheus/common's model.ParseDuration: units in descending order, each at most once.
const DURATION_RE = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;
const UNIT_MS = [365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1_000, 1];

/** Parses a Prometheus duration into milliseconds; undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  if (text === '' || text === '0') return text === '0' ? 0 : undefined;
  const match = DURATION_RE.exec(text);
  if (!match) return undefined;
  let ms = 0;
  for (let i = 0; i < UNIT_MS.length; i++) {
    const n = match[i + 1];
    if (n !== undefined) ms += Number(n) * UNIT_MS[i]!;
  }
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/**
 * Writes milliseconds as a duration parseDuration reads back, in days at the most, as people
 * count intervals between runs: `31d`, `2d15h`, `30s`.
 */
export function formatDuration(ms: number): string {
  let rest = ms;
  let text = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1_000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) text += `${n}${unit}`;
    rest -= n * size;
  }
  return text === '' ? '0s' : text;
}

/** The regular expression source, for the JSON Schema `pattern` of duration fields. */
export const DURATION_PATTERN = DURATION_RE.source;

// Sizes as Prometheus writes them (`body_size_limit: 10MB`): base-2 units.
const SIZE_RE = /^(\d+)(B|KB|KiB|MB|MiB|GB|GiB)?$/;
const SIZE_UNIT: Record<string, number> = { B: 1, KB: 1024, KiB: 1024, MB: 1024 ** 2, MiB: 1024 ** 2, GB: 1024 ** 3, GiB: 1024 ** 3 };

/** Parses a byte size (`8MiB`, `512KiB`, `1048576`) into bytes; undefined when it is not one. */
export function parseSize(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : undefined;
  const match = SIZE_RE.exec(text);
  if (!match) return undefined;
  const bytes = Number(match[1]) * SIZE_UNIT[match[2] ?? 'B']!;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** The size syntax as a pattern, for the JSON schema that editors validate config.yaml with. */
export const SIZE_PATTERN = SIZE_RE.source;
