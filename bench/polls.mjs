// The whole exporter (createExporter: config → scheduler → undici → store → HTTP, as main.js
// builds it) polling `units` poll units against the fake API at `concurrency`, in its own process.
// It measures two rounds of polls: the first, which builds every unit's state, and the next one,
// started by the cron schedule as every later round is (the steady state). For each: wall time
// (throughput), CPU, and the event-loop delay while the answers land; the parent scrapes it
// meanwhile and asks for memory.
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import { Writable } from 'node:stream';
import { parseConfig } from '../dist/config/load.js';
import { createExporter } from '../dist/exporter/exporter.js';
import { listen } from '../dist/http/server.js';
import { createLogger } from '../dist/log/logger.js';
import { staticTokenSource } from '../dist/api/token.js';
import { lowerHelperThreads } from '../dist/threads/priority.js';

const [apiUrl, unitsArg, concurrencyArg, periodArg] = process.argv.slice(2);
const units = Number(unitsArg);
const concurrency = Number(concurrencyArg);
// Seconds between rounds: a divisor of 60, longer than the first round takes; 0 for the first
// round only (the schedule then never fires during the benchmark).
const period = Number(periodArg);
if (!apiUrl || !(units > 0) || units % 10 !== 0 || !(concurrency > 0) || !(period === 0 || 60 % period === 0)) {
  throw new Error('usage: polls.mjs <api url> <units, a multiple of 10> <concurrency> <seconds between rounds, a divisor of 60, or 0>');
}

// Workspaces × 10 models × up to 100 users each: the filter matrices of a large organisation.
const models = Array.from({ length: 10 }, (_, i) => `model-${i}`);
const targets = [];
for (let left = units, t = 0; left > 0; t++) {
  const users = Math.min(100, left / 10);
  targets.push(
    `  - name: ws-${t}\n    scope: workspace\n    id: wsid-${t}\n    labels: { team: "team-${t % 7}" }\n` +
      `    filters:\n      model: [${models.join(', ')}]\n      userId: [${Array.from({ length: users }, (_, u) => `user-${t}-${u}`).join(', ')}]\n`,
  );
  left -= users * 10;
}
const yaml = `api:
  baseUrl: ${apiUrl}
  concurrency: ${concurrency}
  retries: 0
defaults:
  schedule: "${period === 0 ? '0 0 0 1 1 *' : `*/${period} * * * * *`}"
  summary: true
limits:
  maxSeries: 10000000
targets:
${targets.join('')}`;
const loaded = parseConfig(yaml, 'bench.yaml');
if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));

let logged = 0;
const log = createLogger({ level: 'info', format: 'json', destination: new Writable({ write: (_c, _e, done) => (logged++, done()) }) });
// As main.js does before it starts the exporter: V8's compiler threads below the event loop.
const threads = lowerHelperThreads();
if (threads.failed.length > 0) throw threads.failed[0];
const exporter = await createExporter({
  config: loaded.config,
  log,
  version: 'bench',
  loadConfig: async () => loaded,
  tokenSource: async () => staticTokenSource('bench-token'),
  processMetrics: true,
});
const server = await listen(exporter.handler, { host: '127.0.0.1', port: 0 });
const eld = monitorEventLoopDelay({ resolution: 1 });

// Polls finished, counted where they land (the benchmark's own instrument, not the exporter's):
// in the round being measured, and since the start for soak.mjs.
let finished = 0;
let failed = 0;
const total = { polls: 0, failed: 0 };
const { store } = exporter;
for (const method of ['recordSuccess', 'recordFailure']) {
  const record = store[method].bind(store);
  store[method] = (key, result) => {
    finished++;
    total.polls++;
    if (method === 'recordFailure') failed++, total.failed++;
    record(key, result);
  };
}

// The heap in use just after each mark-compact: what is live, without forcing a GC (which would
// compact, and hide the fragmentation a long run is watched for).
const majorGc = { count: 0, heapUsedAfter: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    // 2 is a mark-compact in one pause, 4 the final pause of an incremental one (most of them).
    if (entry.detail?.kind !== 2 && entry.detail?.kind !== 4) continue;
    majorGc.count++;
    majorGc.heapUsedAfter = getHeapStatistics().used_heap_size;
  }
}).observe({ entryTypes: ['gc'] });
const until = (condition) =>
  new Promise((resolve) => {
    const timer = setInterval(() => condition() && (clearInterval(timer), resolve()), 1);
  });
const sleepUntil = (epochMs) => new Promise((resolve) => setTimeout(resolve, Math.max(0, epochMs - Date.now())));

/**
 * Measures one round: `begin` (timed apart: it blocks the event loop), then until every unit
 * has finished a poll; the round's time is counted from the epoch ms `from`.
 */
async function round(begin, from = Date.now()) {
  finished = failed = 0;
  eld.enable();
  const cpu = process.cpuUsage();
  const started = performance.now();
  const origin = started + (from - Date.now());
  await begin();
  const startMs = performance.now() - started;
  eld.reset();
  const majorGcs = majorGc.count;
  await until(() => finished >= units);
  const elapsedMs = performance.now() - origin;
  const used = process.cpuUsage(cpu);
  eld.disable();
  return {
    units,
    failed,
    elapsedMs,
    startMs,
    landingEldMaxMs: eld.max / 1e6,
    landingEldP99Ms: eld.percentile(99) / 1e6,
    cpuMsPerPoll: (used.user + used.system) / 1000 / units,
    // Ended while the answers landed (an incremental one may have started before).
    markCompacts: majorGc.count - majorGcs,
  };
}

let nextTick;
process.on('message', async (msg) => {
  if (msg.cmd === 'first') {
    // Start just after a tick of the schedule, so the first round ends before the next one.
    if (period > 0) {
      const boundary = Math.ceil(Date.now() / (period * 1000)) * period * 1000;
      await sleepUntil(boundary + 50);
      nextTick = boundary + period * 1000;
    } else {
      nextTick = Number.POSITIVE_INFINITY;
    }
    // The scheduler queues every unit and starts the first polls in one synchronous call: the
    // event loop is blocked for all of it, so it is measured apart from the landing of the answers.
    const result = await round(() => exporter.start());
    if (Date.now() >= nextTick) throw new Error(`the first round took longer than the ${period} s between rounds: raise it`);
    process.send({ id: msg.id, ...result, logLines: logged });
  } else if (msg.cmd === 'steady') {
    // The next round is the schedule's: it begins at the tick, and is measured from a moment before.
    await sleepUntil(nextTick - 20);
    const result = await round(() => sleepUntil(nextTick), nextTick);
    // The tick after it, for the next 'steady' (promotion.mjs measures several).
    nextTick += period * 1000;
    if (Date.now() >= nextTick) throw new Error(`the round took longer than the ${period} s between rounds: raise it`);
    process.send({ id: msg.id, ...result, startMs: undefined, logLines: logged });
  } else if (msg.cmd === 'memory') {
    const m = process.memoryUsage();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, Math.round(sp.physical_space_size / 2 ** 20)]));
    process.send({
      id: msg.id,
      rss: m.rss,
      peakRss: process.resourceUsage().maxRSS * 1024,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      spacesMiB: spaces,
      majorGcs: majorGc.count,
      heapUsedAfterMajorGc: majorGc.count > 0 ? majorGc.heapUsedAfter : null,
      ...total,
    });
  } else if (msg.cmd === 'exit') {
    await exporter.stop();
    server.closeAllConnections();
    server.close(() => process.exit(0));
  }
});
process.send({ ready: true, port: server.address().port });
