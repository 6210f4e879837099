import type { UnitStatus } from '../store/store.js';

// Enough rows to find a failing unit by eye; beyond that, the metrics are the tool.
const MAX_ROWS = 1000;

/** What the landing page shows: a snapshot of the units' state, and the clock it is read against. */
export interface LandingInfo {
  readonly version: string;
  readonly telemetryPath: string;
  readonly units: readonly UnitStatus[];
  readonly now: number;
}

/** The landing page: links, version and one row per poll unit with its state. */
export function renderLanding(info: LandingInfo): string {
  const { units, now } = info;
  const down = units.filter((u) => u.up === false).length;
  const pending = units.filter((u) => u.up === undefined).length;
  const rows = units
    .slice(0, MAX_ROWS)
    .map((u) => {
      const state = u.up === undefined ? 'pending' : u.up ? 'up' : 'down';
      return `<tr class="${state}"><td>${esc(u.id)}</td><td>${state}</td><td>${u.hasData ? 'yes' : 'no'}</td><td>${when(u.lastSuccessAt, now)}</td><td>${
        u.durationSeconds === undefined ? '' : `${u.durationSeconds.toFixed(3)}s`
      }</td><td>${esc(u.lastError ?? '')}</td></tr>`;
    })
    .join('\n');
  const more = units.length > MAX_ROWS ? `<p>Showing the first ${MAX_ROWS} of ${units.length} units.</p>` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Flashback Exporter</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
tr.down td{background:#fde8e8} tr.pending td{color:#777}
</style>
</head>
<body>
<h1>Flashback Exporter</h1>
<p>Version ${esc(info.version)}. Publishes Flashback private-chat token and request statistics for Prometheus.</p>
<ul>
<li><a href="${esc(info.telemetryPath)}">Metrics</a></li>
<li><a href="/-/healthy">Health</a> and <a href="/-/ready">readiness</a></li>
</ul>
<h2>Poll units</h2>
<p>${units.length} units: ${units.length - down - pending} up, ${down} down, ${pending} not yet polled.</p>
${more}
<table>
<thead><tr><th>Unit</th><th>State</th><th>Data</th><th>Last success</th><th>Last poll took</th><th>Last error</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</body>
</html>
`;
}

function when(at: number | undefined, now: number): string {
  if (at === undefined) return 'never';
  return `${new Date(at).toISOString()} (${Math.max(0, Math.round((now - at) / 1000))}s ago)`;
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
