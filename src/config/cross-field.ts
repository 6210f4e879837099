import { ConfigSchema, pollSettings } from './schema.js';
import { formatDuration, parseDuration } from './duration.js';
import { scheduleProfile } from './schedule.js';
import type { ConfigProblem, YamlLocator, YamlPath } from './yaml.js';

// Checks between fields, on the config as written: they run whatever else is wrong with the
// file (see ValidateYamlOptions.crossCheck), and pass over any field that is itself invalid.

type PollKey = keyof typeof pollSettings;

/** What a target gets when neither it nor `defaults` sets a key. */
const BUILT_IN = ConfigSchema.shape.defaults.parse({});

/** A poll setting as one target gets it, and the key that sets it (none when built in). */
interface Setting {
  readonly value: unknown;
  readonly path: YamlPath | undefined;
}

/** Every problem between the fields of `data`, each reported once, at the key to change. */
export function crossFieldProblems(data: unknown, locate: YamlLocator): ConfigProblem[] {
  const root = record(data);
  const targets = Array.isArray(root?.targets) ? (root.targets as unknown[]) : [];
  const defaults = record(root?.defaults);
  const problems = new Map<string, ConfigProblem>();
  const report = (path: YamlPath, message: string) => {
    const problem = locate.problem(path, message);
    // A default's problem is the same for every target that inherits it: say it once.
    problems.set(`${problem.path}\n${message}`, problem);
  };

  targets.forEach((t, i) => {
    const target = record(t);
    if (target === undefined) return;
    /** The setting, or undefined when the key that sets it is invalid (the schema says why). */
    const setting = (key: PollKey): Setting | undefined => {
      for (const [where, path] of [[target, ['targets', i, key]], [defaults, ['defaults', key]]] as const) {
        const value = where?.[key];
        if (value !== undefined) return pollSettings[key].safeParse(value).success ? { value, path } : undefined;
      }
      return { value: BUILT_IN[key], path: undefined };
    };

    // A bucket longer than the window can never fill; the API would answer with one partial bucket.
    const window = setting('window');
    const bucket = setting('timeBucketSize');
    if (window !== undefined && bucket !== undefined && parseDuration(bucket.value as string)! > parseDuration(window.value as string)!) {
      // Name the key written nearest the target, the one to change: a target's own over a
      // default, which a target may not even mention.
      const written = [bucket.path, window.path].filter((p) => p !== undefined);
      report(written.find((p) => p[0] === 'targets') ?? written[0]!, `timeBucketSize (${bucket.value}) is longer than window (${window.value})`);
    }

    // Data not refreshed within staleAfter is dropped while target_up stays 1: a staleAfter
    // shorter than the schedule's gaps would empty the target between polls. Only a staleAfter
    // the file sets is checked; the default is made to fit the schedule (defaultStaleAfterMs).
    const staleAfter = setting('staleAfter');
    const schedule = setting('schedule');
    if (staleAfter?.path !== undefined && schedule !== undefined) {
      const profile = scheduleProfile(schedule.value as string);
      if (parseDuration(staleAfter.value as string)! < profile.longestIntervalMs) {
        const longest = `${profile.beyondHorizon ? 'at least ' : ''}${formatDuration(profile.longestIntervalMs)}`;
        report(
          staleAfter.path,
          `staleAfter (${staleAfter.value}) is shorter than the longest interval between runs of the schedule "${schedule.value}" (${longest}): ` +
            `the data series would expire between polls; make it at least ${formatDuration(profile.longestIntervalMs)} or leave it unset`,
        );
      }
    }
  });
  return [...problems.values()];
}

function record(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
