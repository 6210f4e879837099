import { LineCounter, isMap, isSeq, isScalar, parseDocument, type Document, type Node } from 'yaml';
import { closest, distance } from 'fastest-levenshtein';
import * as z from 'zod';

// Shared by every YAML file the exporter reads (the main config, the web config), so each
// reports its problems the same way: every one at once, with file, line, column and path.

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

/** `targets[1].filters.model[0]`; keys that are not identifiers are quoted. */
export function formatPath(path: readonly PropertyKey[]): string {
  return z.core.toDotPath(path as PropertyKey[]);
}

/** Keys and list indexes from the document root, as zod reports them. */
export type YamlPath = readonly (string | number)[];

/** Where things are in the validated text, for problems found after the schema passed. */
export interface YamlLocator {
  /** A problem at a path: located at the entry's key, or the nearest ancestor that exists. */
  problem(path: YamlPath, message: string): ConfigProblem;
  /** Like `problem`, but located at the value itself (where a number or a list starts); no position when it is absent. */
  problemAtValue(path: YamlPath, message: string): ConfigProblem;
}

/** The validated data with a locator for later problems, or every problem found. */
export type YamlResult<T> = { ok: true; data: T; locate: YamlLocator } | { ok: false; problems: ConfigProblem[] };

/** How validateYaml treats what differs between files. */
export interface ValidateYamlOptions<I> {
  /**
   * What an empty document means: a message makes it a problem; a function gives the
   * value to validate instead (for files where every key is optional).
   */
  readonly whenEmpty: string | (() => I);
  /**
   * Checks that span several fields, run on the data as written whether the schema passed or
   * not: zod skips its own refinements once any field fails outright (1.5 for a whole number),
   * and every problem should still be reported at once. They pass over fields that are invalid
   * on their own, whose problems the schema reports.
   */
  readonly crossCheck?: (data: unknown, locate: YamlLocator) => ConfigProblem[];
}

/**
 * Validates YAML text against a zod schema: syntax, then the schema. It never throws for
 * any input; every problem comes back at once, each with its line and column, unknown keys
 * with a "did you mean" hint. Objects in the schema should be strict for that to work.
 */
export function validateYaml<S extends z.ZodType>(
  schema: S,
  text: string,
  file: string,
  options: ValidateYamlOptions<z.input<S>>,
): YamlResult<z.output<S>> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true, merge: true });
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
    if (typeof options.whenEmpty === 'string') {
      return { ok: false, problems: [{ file, line: undefined, column: undefined, path: '', message: options.whenEmpty }] };
    }
    data = options.whenEmpty();
  }

  const locate: YamlLocator = {
    problem: (path, message) => ({ file, ...at(offsetOf(doc, path)), path: formatPath(path), message }),
    problemAtValue: (path, message) => {
      const node = doc.getIn(path, true) as Node | undefined;
      return { file, ...at(node?.range?.[0]), path: formatPath(path), message };
    },
  };
  const parsed = schema.safeParse(data, { reportInput: true });
  const problems = [
    ...(parsed.success ? [] : parsed.error.issues.flatMap((issue) => describeIssue(schema, issue, doc, at, file))),
    ...(options.crossCheck?.(data, locate) ?? []),
  ];
  if (!parsed.success || problems.length > 0) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    return { ok: false, problems };
  }
  return { ok: true, data: parsed.data, locate };
}

type Issue = z.core.$ZodIssue;

function describeIssue(
  schema: z.ZodType,
  issue: Issue,
  doc: Document,
  at: (offset: number | undefined) => { line: number | undefined; column: number | undefined },
  file: string,
): ConfigProblem[] {
  const path = issue.path as (string | number)[];
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(schema, path);
    return issue.keys.map((key) => {
      const suggestion = nearMiss(key, known);
      const hint = suggestion === undefined ? `; known keys: ${known.join(', ')}` : ` (did you mean "${suggestion}"?)`;
      return { file, ...at(offsetOf(doc, [...path, key])), path: formatPath([...path, key]), message: `unknown key${hint}` };
    });
  }
  return [{ file, ...at(offsetOf(doc, path)), path: formatPath(path), message: messageOf(issue) }];
}

// Our schemas set a message for every check; these cover the generic cases zod words itself.
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

/** The closest of `known` to `key`, if it is close enough to be a likely typo. */
export function nearMiss(key: string, known: readonly string[]): string | undefined {
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

function firstLine(message: string): string {
  return message.split('\n')[0]!.trim();
}
