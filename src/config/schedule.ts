import { createTask, parse, type ParsedFields } from 'node-cron';

/** How a cron expression spreads its runs over time. */
export interface ScheduleProfile {
  /** Runs per hour, averaged over the horizon: exact for a schedule that runs alike every day. */
  readonly runsPerHour: number;
  /**
   * The longest time between two runs in a row, in ms. For a schedule that runs on fewer than
   * two days of the horizon, the horizon itself: all that can be said is that it is no shorter.
   */
  readonly longestIntervalMs: number;
  /** Whether longestIntervalMs is that lower bound. */
  readonly beyondHorizon: boolean;
}

/**
 * How far ahead a schedule's runs are looked at: two years and a month, so that a yearly
 * schedule is seen to run twice and a monthly one shows its 31-day gap; and a whole number of
 * weeks (109), so that a schedule of some weekdays averages out exactly.
 */
const HORIZON_DAYS = 763;

const DAY_SECONDS = 86_400;
const CACHE_MAX = 256;
// A profile barely depends on the day it is worked out (the calendar of the next two years),
// so reloads reuse it instead of walking the horizon again for every unchanged schedule.
const cache = new Map<string, ScheduleProfile>();

/**
 * Works out how often a valid cron expression runs, and the longest it leaves between runs,
 * in the time zone node-cron runs it in. Its times of day come from the expression's fields,
 * so a schedule of every second costs no more than one of every hour; node-cron decides which
 * days of the horizon it runs on, so L, W and # mean what they mean to the scheduler.
 */
export function scheduleProfile(expression: string, from?: Date): ScheduleProfile {
  const cached = from === undefined ? cache.get(expression) : undefined;
  if (cached !== undefined) return cached;
  const fields = parse(expression);
  const times = timesOfDay(fields);
  const start = from ?? new Date();
  // Day i of the horizon at a time of day, in local time as node-cron reads it: the days
  // between two runs are counted on the clock, with the hour a change of daylight saving time
  // adds or takes away, as staleness is.
  const runOn = (i: number, time: number) =>
    new Date(start.getFullYear(), start.getMonth(), start.getDate() + i, Math.floor(time / 3600), Math.floor(time / 60) % 60, time % 60);
  const days = runDays(expression, fields, (i) => runOn(i, times.first));

  let longest = times.longestGap * 1000;
  for (let k = 1; k < days.length; k++) {
    longest = Math.max(longest, runOn(days[k]!, times.first).getTime() - runOn(days[k - 1]!, times.last).getTime());
  }
  const profile: ScheduleProfile = {
    runsPerHour: (days.length * times.count) / (HORIZON_DAYS * 24),
    longestIntervalMs: days.length < 2 ? HORIZON_DAYS * DAY_SECONDS * 1000 : longest,
    beyondHorizon: days.length < 2,
  };
  if (from === undefined) {
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(expression, profile);
  }
  return profile;
}

interface TimesOfDay {
  readonly count: number;
  /** Seconds into the day of the first and the last run. */
  readonly first: number;
  readonly last: number;
  /** The longest gap between two runs of one day, in seconds; 0 when it runs once a day. */
  readonly longestGap: number;
}

function timesOfDay({ hour, minute, second }: ParsedFields): TimesOfDay {
  const runs = new Uint8Array(DAY_SECONDS);
  for (const h of hour) for (const m of minute) for (const s of second) runs[h * 3600 + m * 60 + s] = 1;
  let count = 0;
  let first = -1;
  let last = -1;
  let longestGap = 0;
  for (let t = 0; t < DAY_SECONDS; t++) {
    if (runs[t] === 0) continue;
    if (first < 0) first = t;
    else longestGap = Math.max(longestGap, t - last);
    last = t;
    count++;
  }
  return { count, first, last, longestGap };
}

/** The days of the horizon the schedule runs on, as indexes from its first day. */
function runDays(expression: string, fields: ParsedFields, firstRunOn: (i: number) => Date): number[] {
  const all = Array.from({ length: HORIZON_DAYS }, (_, i) => i);
  const everyDay =
    fields.month.length === 12 &&
    Array.from({ length: 31 }, (_, i) => i + 1).every((d) => fields.dayOfMonth.includes(d)) &&
    [0, 1, 2, 3, 4, 5, 6].every((d) => fields.dayOfWeek.includes(d));
  if (everyDay) return all;
  const task = createTask(expression, () => {});
  try {
    return all.filter((i) => task.match(firstRunOn(i)));
  } finally {
    void task.destroy();
  }
}
