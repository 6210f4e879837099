// Preloaded (`node --import`) into a benchmark child by gaps.mjs: records every event-loop gap
// longer than 5 ms, as monitorEventLoopDelay sees them but with their times, and the GC pauses
// perf_hooks reports inside each. Times are CLOCK_MONOTONIC seconds, the clock of
// `perf record -k CLOCK_MONOTONIC`, so gaps.mjs can match them with perf's samples.
// Answers `{ cmd: 'gaps' }` on the child's IPC channel with all of them; the child's own script
// ignores the message.
import { PerformanceObserver } from 'node:perf_hooks';

const MIN_GAP_MS = 5;
const KINDS = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
// performance.now() + offset = CLOCK_MONOTONIC in ms (process.hrtime reads that clock).
const offset = Number(process.hrtime.bigint()) / 1e6 - performance.now();
const gaps = [];
const gcs = [];

new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcs.push({ start: entry.startTime, ms: entry.duration, kind: KINDS[entry.detail?.kind] ?? 'other' });
}).observe({ entryTypes: ['gc'] });

// A 1 ms timer, as monitorEventLoopDelay({ resolution: 1 }) in polls.mjs: a gap is the time
// between two of its turns.
let last = performance.now();
setInterval(() => {
  const now = performance.now();
  if (now - last > MIN_GAP_MS) gaps.push({ from: last, to: now });
  last = now;
}, 1).unref();

process.on('message', (msg) => {
  if (msg?.cmd !== 'gaps') return;
  const report = gaps.map((gap) => {
    const inside = gcs.filter((gc) => gc.start < gap.to && gc.start + gc.ms > gap.from);
    return { start: (gap.from + offset) / 1000, end: (gap.to + offset) / 1000, ms: gap.to - gap.from, gc: inside.map(({ kind, ms }) => ({ kind, ms })) };
  });
  process.send({ id: msg.id, gaps: report });
});
