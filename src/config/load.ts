import { readFile } from 'node:fs/promises';
import { ConfigSchema } from './schema.js';
import { resolveConfig, type Config } from './config.js';
import { crossFieldProblems } from './cross-field.js';
import { seriesPerUnit, unitCount } from './units.js';
import { formatProblem, validateYaml, type ConfigProblem } from './yaml.js';

// The YAML machinery lives in yaml.ts, shared with the web config; these stay exported here.
export { formatPath, formatProblem, type ConfigProblem } from './yaml.js';

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

/** A loaded configuration, or every problem found in it (not only the first), each with its line. */
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
 * Validates config text completely: YAML syntax, then the schema with the checks between
 * fields, then the series budget.
 * It never throws for any input; every problem comes back at once, each with its line.
 */
export function parseConfig(text: string, file = 'config.yaml'): LoadResult {
  const result = validateYaml(ConfigSchema, text, file, { whenEmpty: 'is empty: it needs at least a targets list', crossCheck: crossFieldProblems });
  if (!result.ok) return result;

  const config = resolveConfig(result.data);
  const budget = checkSeriesBudget(config);
  if (budget !== undefined) return { ok: false, problems: [result.locate.problemAtValue(['limits', 'maxSeries'], budget)] };
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
