// Prometheus text exposition format 0.0.4, written the way prom-client writes it, so that
// the pre-rendered store and a prom-client registry produce byte-identical sample lines.

/** Label name/value pairs in exposition order. */
export type LabelPairs = readonly (readonly [name: string, value: string])[];

const NEEDS_ESCAPE = /[\\\n"]/;

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  // Most values need nothing: one scan instead of three replacements (10k units at startup).
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** `a="x",b="y"`, without braces, so callers can append labels of their own. */
export function renderLabels(pairs: LabelPairs): string {
  let text = '';
  for (const [name, value] of pairs) text += `${text === '' ? '' : ','}${name}="${escapeLabelValue(value)}"`;
  return text;
}

/** One sample line, newline included; `labels` is already rendered. */
export function sampleLine(name: string, labels: string, value: number): string {
  return labels === '' ? `${name} ${value}\n` : `${name}{${labels}} ${value}\n`;
}

/**
 * Writes `value` into `out` at `at` as JavaScript prints it (and so prom-client), returning the
 * end; `out` must have room for 25 bytes. String(value) makes a number's text through V8's
 * number-string cache, which holds each string from old space, so every value rendered there
 * outlived the minor GCs and was promoted: with 10,000 units, about a hundred thousand strings
 * a round. A safe integer's digits (token counts, most values) are written one by one; other
 * finite numbers go through JSON.stringify, whose text for a finite number is the same (JSON
 * prints a number as ToString does) and which keeps no cache.
 */
export function writeNumber(out: Buffer, at: number, value: number): number {
  if (!Number.isSafeInteger(value)) return at + out.write(Number.isFinite(value) ? JSON.stringify(value) : String(value), at, 'latin1');
  let rest = value;
  if (rest < 0) {
    out[at++] = 0x2d; // '-'
    rest = -rest;
  }
  let end = at + 1;
  for (let power = 10; power <= rest; power *= 10) end++;
  for (let i = end - 1; i >= at; i--) {
    const next = Math.floor(rest / 10);
    out[i] = 0x30 + (rest - next * 10);
    rest = next;
  }
  return end;
}

/** The `# HELP` and `# TYPE` lines that open a metric family. */
export function familyHeader(name: string, help: string, type: 'gauge' | 'counter' | 'histogram'): string {
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
}

/** Content type of the text format, as Prometheus negotiates it. */
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
