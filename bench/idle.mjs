// An idle node process: the event-loop delay that the machine alone imposes. run.mjs pins it to
// the exporter's CPU during the poll rounds, so that a round's maximum can be read against what
// a process doing nothing saw in the same seconds: the floor for event-loop delay, as the static
// Buffer is the floor for scrape latency.
// It times its own 1 ms timer, as monitorEventLoopDelay({ resolution: 1 }) does, and answers
// `{ cmd: 'window', from, to }` (CLOCK_MONOTONIC ms, the clock of process.hrtime) with the
// longest gap between two of its turns that overlaps that window, and every gap over 1.5 ms
// that does (gaps.mjs matches them with the exporter's).
const MIN_GAP_MS = 1.5;
// performance.now() + offset = CLOCK_MONOTONIC in ms.
const offset = Number(process.hrtime.bigint()) / 1e6 - performance.now();
const gaps = [];
let last = performance.now();
setInterval(() => {
  const now = performance.now();
  if (now - last > MIN_GAP_MS) gaps.push({ from: last + offset, to: now + offset });
  last = now;
}, 1);

process.on('message', (msg) => {
  if (msg.cmd === 'window') {
    const inside = gaps.filter((gap) => gap.to > msg.from && gap.from < msg.to);
    // Windows are asked for in order: gaps that ended within this one are not asked for again.
    while (gaps.length > 0 && gaps[0].to <= msg.to) gaps.shift();
    process.send({ id: msg.id, maxMs: Math.max(1, ...inside.map((gap) => gap.to - gap.from)), gaps: inside });
  } else if (msg.cmd === 'exit') {
    process.exit(0);
  }
});
process.send({ ready: true });
