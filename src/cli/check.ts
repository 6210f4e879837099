import type { Config } from '../config/config.js';
import { expandUnits, seriesPerUnit, shardOf, type PollUnit, type Sharding } from '../config/units.js';
import { scheduleProfile } from '../config/schedule.js';

/**
 * What --config.check prints: the targets, the poll units, the series and API calls they
 * imply, per shard when sharded, so a change can be judged before it is deployed.
 */
export function describePlan(config: Config, file: string, sharding: Sharding): string {
  const all = expandUnits(config);
  const rate = new Map<string, number>();
  const callsOf = (u: PollUnit) => {
    let r = rate.get(u.target.schedule);
    if (r === undefined) rate.set(u.target.schedule, (r = scheduleProfile(u.target.schedule).runsPerHour));
    return r;
  };
  const sum = (list: readonly PollUnit[], f: (u: PollUnit) => number) => list.reduce((n, u) => n + f(u), 0);
  // Two significant digits below one call an hour, so a weekly schedule shows 0.006, not 0.0;
  // above, one decimal at most, so a weekly target beside a minutely one adds no 60.0.
  const fmt = (n: number) => String(n < 1 ? Number(n.toPrecision(2)) : Number(n.toFixed(1)));

  const lines = [`${file}: configuration is valid`, ''];
  const table = [['TARGET', 'SCOPE', 'UNITS', 'SERIES', 'CALLS/HOUR', 'SCHEDULE']];
  for (const target of config.targets) {
    const units = all.filter((u) => u.target === target);
    table.push([target.name, target.scope, String(units.length), String(units.length * seriesPerUnit(target)), fmt(sum(units, callsOf)), target.schedule]);
  }
  lines.push(...columns(table), '');
  lines.push(
    `total: ${config.targets.length} targets, ${all.length} poll units, about ${sum(all, (u) => seriesPerUnit(u.target))} series, ${fmt(sum(all, callsOf))} API calls per hour`,
  );
  if (sharding.totalShards > 1) {
    lines.push('', ...columns([
      ['SHARD', 'UNITS', 'SERIES', 'CALLS/HOUR'],
      ...Array.from({ length: sharding.totalShards }, (_, shard) => {
        const mine = all.filter((u) => shardOf(u.id, sharding.totalShards) === shard);
        return [`${shard}${shard === sharding.shard ? ' (this one)' : ''}`, String(mine.length), String(sum(mine, (u) => seriesPerUnit(u.target))), fmt(sum(mine, callsOf))];
      }),
    ]));
  }
  lines.push('', 'poll units:', ...all.map((u) => `  ${u.id}`), '');
  return lines.join('\n');
}

function columns(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}
