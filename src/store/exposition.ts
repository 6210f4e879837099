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

/** The `# HELP` and `# TYPE` lines that open a metric family. */
export function familyHeader(name: string, help: string, type: 'gauge' | 'counter' | 'histogram'): string {
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
}

/** Content type of the text format, as Prometheus negotiates it. */
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
