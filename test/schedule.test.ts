import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { scheduleProfile } from '../src/config/schedule.js';

const from = new Date(2025, 0, 15, 10, 30);
const SECOND = 1_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

describe('schedule profile', () => {
  it('counts exactly 3600 runs an hour for a schedule of every second, in well under a second', () => {
    const started = performance.now();
    const profile = scheduleProfile('*/1 * * * * *', from);
    expect(performance.now() - started).toBeLessThan(500);
    expect(profile).toEqual({ runsPerHour: 3600, longestIntervalMs: SECOND, beyondHorizon: false });
  });

  it.each([
    ['*/30 * * * * *', 120, 30 * SECOND],
    ['0 * * * * *', 60, 60 * SECOND],
    ['0 */5 * * * *', 12, 5 * 60 * SECOND],
    ['0 * * * *', 1, HOUR],
    ['0 0,30 8-17 * * *', 20 / 24, 14.5 * HOUR],
  ])('counts the runs of %s, which runs alike every day, exactly', (expression, runsPerHour, longestIntervalMs) => {
    expect(scheduleProfile(expression, from)).toEqual({ runsPerHour, longestIntervalMs, beyondHorizon: false });
  });

  it('averages a weekly schedule over whole weeks, and finds its 7 days between runs', () => {
    expect(scheduleProfile('0 0 * * 1', from)).toEqual({ runsPerHour: 1 / 168, longestIntervalMs: 7 * DAY, beyondHorizon: false });
  });

  it('gives a monthly schedule its share of runs, not zero, and its longest month between runs', () => {
    const monthly = scheduleProfile('0 0 1 * *', from);
    expect(monthly.runsPerHour).toBeCloseTo(12 / (365 * 24), 4);
    expect(monthly.longestIntervalMs).toBe(31 * DAY);
  });

  it('finds the weekend of a schedule that runs on working hours only', () => {
    expect(scheduleProfile('*/30 * 9-17 * * mon-fri', from).longestIntervalMs).toBe(2 * DAY + 15 * HOUR + 30 * SECOND);
  });

  it('reads L and # as the scheduler does', () => {
    expect(scheduleProfile('0 0 L * *', from).longestIntervalMs).toBe(31 * DAY);
    expect(scheduleProfile('0 0 * * 1#2', from).longestIntervalMs).toBe(35 * DAY);
  });

  it('counts the hour a change of daylight saving time adds between two runs, as staleness does', () => {
    // node-cron keeps its time zone from its first use: a fresh process has to start in the zone.
    const code = `import { scheduleProfile } from './dist/config/schedule.js';
      const from = new Date(${from.getTime()});
      console.log(JSON.stringify(['0 0 * * 1', '*/1 * * * * *', '0 * * * *'].map((e) => scheduleProfile(e, from).longestIntervalMs)));`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      cwd: new URL('..', import.meta.url),
      env: { ...process.env, TZ: 'Europe/Berlin' },
      encoding: 'utf8',
    });
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toEqual([7 * DAY + HOUR, SECOND, HOUR]);
  });

  it('sees a yearly schedule run twice', () => {
    expect(scheduleProfile('0 0 0 1 1 *', from).longestIntervalMs).toBe(365 * DAY);
  });

  it('says no more than "at least the horizon" of a schedule that runs less often', () => {
    expect(scheduleProfile('0 0 29 2 *', new Date(2025, 2, 1))).toEqual({ runsPerHour: 0, longestIntervalMs: 763 * DAY, beyondHorizon: true });
  });
});
