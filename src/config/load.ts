import { readFile } from 'node:fs/promises';
import { LineCounter, isMap, isSeq, isScalar, parseDocument, type Document, type Node } from 'yaml';
import { closest, distance } from 'fastest-levenshtein';
import * as z from 'zod';
import { ConfigSchema } from './schema.js';
import { resolveConfig, type Config } from './config.js';
import { seriesPerUnit, unitCount } from './units.js';

/** One problem in a config file, located by YAML path and by line and column (1-based). */
export interface ConfigProblem {
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  /** `targets[1].scope`, or empty for the document as a whole. */
  readonly path: string;
  readonly message: string;
}

/** `config.yaml:12:5 targets[1].scope: must be one of org, workspace, repo` */
export function formatProblem(p: ConfigProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column}`;
  return p.path === '' ? `${where} ${p.message}` : `${where} ${p.path}: ${p.message}`;
}

/**
 * A config that cannot be used, with every problem found in it. Its `code` is stable so
 * callers (reload, --config.check) can tell it from I/O failures without parsing text.
 */
export class ConfigError extends Error {
  readonly code = 'FLASHBACK_ERR_CONFIG';
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[], options?: { cause?: unknown }) {
    super(problems.map(formatProblem).join('\n'), options);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export type LoadResult = { ok: true; config: Config } | { ok: false; problems: ConfigProblem[] };

/** Reads and validates a config file; unreadable files are reported as a problem too. */
export async function loadConfigFile(path: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    return { ok: false, problems: [{ file: path, line: undefined, column: undefined, path: '', message: `cannot read config file: ${why}` }] };
  }
  return parseConfig(text, path);
}

/**
 * Validates config text completely: YAML syntax, then the schema, then the series budget.
 * It never throws for any input; every problem comes back at once, each with its line.
 */
export function parseConfig(text: string, file = 'config.yaml'): LoadResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true });
  const at = (offset: number | undefined) => (offset === undefined ? { line: undefined, column: undefined } : positionOf(lines, offset));

  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({ file, ...at(e.pos[0]), path: '', message: `invalid YAML: ${firstLine(e.message)}` })),
    };
  }
  let data: unknown;
  try {
    // Aliases are capped so a "billion laughs" file cannot exhaust memory.
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    return { ok: false, problems: [{ file, line: undefined, column: undefined, path: '', message: `invalid YAML: ${firstLine((err as Error).message)}` }] };
  }
  if (data === null || data === undefined) {
    return { ok: false, problems: [{ file, line: undefined, column: undefined, path: '', message: 'is empty: it needs at least a targets list' }] };
  }

  const parsed = ConfigSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) {
    const problems = parsed.error.issues.flatMap((issue) => describeIssue(issue, doc, at, file));
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    return { ok: false, problems };
  }

  const config = resolveConfig(parsed.data);
  const budget = checkSeriesBudget(config);
  if (budget !== undefined) {
    const node = doc.getIn(['limits', 'maxSeries'], true) as Node | undefined;
    return { ok: false, problems: [{ file, ...at(node?.range?.[0]), path: 'limits.maxSeries', message: budget }] };
  }
  return { ok: true, config };
}

/** Explains a config whose units would publish more series than `limits.maxSeries`. */
function checkSeriesBudget(config: Config): string | undefined {
  const perTarget = config.targets.map((t) => ({ name: t.name, units: unitCount(t), series: unitCount(t) * seriesPerUnit(t) }));
  const total = perTarget.reduce((n, t) => n + t.series, 0);
  if (total <= config.limits.maxSeries) return undefined;
  const largest = perTarget
    .sort((a, b) => b.series - a.series)
    .slice(0, 3)
    .map((t) => `${t.name} (${t.units} unit${t.units === 1 ? '' : 's'}, ${t.series} series)`)
    .join(', ');
  return `the targets' filter matrices imply ${total} series, more than the limit of ${config.limits.maxSeries}; largest: ${largest}`;
}

type Issue = z.core.$ZodIssue;

function describeIssue(
  issue: Issue,
  doc: Document,
  at: (offset: number | undefined) => { line: number | undefined; column: number | undefined },
  file: string,
): ConfigProblem[] {
  const path = issue.path as (string | number)[];
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(ConfigSchema, path);
    return issue.keys.map((key) => {
      const suggestion = nearMiss(key, known);
      const hint = suggestion === undefined ? `; known keys: ${known.join(', ')}` : ` (did you mean "${suggestion}"?)`;
      return { file, ...at(offsetOf(doc, [...path, key])), path: formatPath([...path, key]), message: `unknown key${hint}` };
    });
  }
  return [{ file, ...at(offsetOf(doc, path)), path: formatPath(path), message: messageOf(issue) }];
}

// Our schema sets a message for every check; these cover the generic cases zod words itself.
function messageOf(issue: Issue): string {
  if (issue.code === 'invalid_key') return issue.issues[0]?.message ?? issue.message;
  if (issue.code === 'invalid_type' && issue.input === undefined) return 'is required';
  if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input')) return `must be ${article(issue.expected)}, not ${describeValue(issue.input)}`;
  return issue.message;
}

function article(expected: string): string {
  const name = expected === 'int' ? 'whole number' : expected === 'object' ? 'mapping' : expected === 'array' ? 'list' : expected;
  return /^[aeiou]/.test(name) ? `an ${name}` : `a ${name}`;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function nearMiss(key: string, known: readonly string[]): string | undefined {
  if (known.length === 0) return undefined;
  const folded = known.find((k) => k.toLowerCase() === key.toLowerCase());
  if (folded !== undefined) return folded;
  const best = closest(key, known as string[]);
  return distance(key, best) <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** The keys the schema accepts at a path, for "did you mean" hints. */
function knownKeysAt(schema: z.ZodType, path: readonly (string | number)[]): string[] {
  let node: z.ZodType | undefined = unwrap(schema);
  for (const step of path) {
    if (node instanceof z.ZodObject) node = unwrap(node.shape[step as string]);
    else if (node instanceof z.ZodArray) node = unwrap(node.element as z.ZodType);
    else if (node instanceof z.ZodRecord) node = unwrap(node.valueType as z.ZodType);
    else return [];
  }
  return node instanceof z.ZodObject ? Object.keys(node.shape) : [];
}

function unwrap(schema: z.ZodType | undefined): z.ZodType | undefined {
  let s = schema;
  while (s !== undefined) {
    const def = (s as unknown as { _zod: { def: { innerType?: z.ZodType; in?: z.ZodType } } })._zod.def;
    const inner = def.innerType ?? def.in;
    if (inner === undefined) return s;
    s = inner;
  }
  return s;
}

/**
 * The source offset to report for a path: a mapping entry's key (where the eye looks for
 * `scope:`), a list item itself, or for a missing entry the nearest ancestor that exists.
 */
function offsetOf(doc: Document, path: readonly (string | number)[]): number | undefined {
  if (path.length === 0) return (doc.contents as Node | null)?.range?.[0];
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  const step = path[path.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(step));
    const offset = (pair?.key as Node | null | undefined)?.range?.[0];
    if (offset !== undefined) return offset;
  } else if (isSeq(parent) && typeof step === 'number') {
    const offset = (parent.items[step] as Node | undefined)?.range?.[0];
    if (offset !== undefined) return offset;
  }
  return offsetOf(doc, path.slice(0, -1));
}

function positionOf(lines: LineCounter, offset: number): { line: number; column: number } {
  const { line, col } = lines.linePos(offset);
  return { line, column: col };
}

/** `targets[1].filters.model[0]`; keys that are not identifiers are quoted. */
export function formatPath(path: readonly PropertyKey[]): string {
  return z.core.toDotPath(path as PropertyKey[]);
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.trim();
}

