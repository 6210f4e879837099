// The whole exporter (createExporter: config → scheduler → undici → store → HTTP, as main.js
// builds it) polling `units` poll units against the fake API at `concurrency`, in its own process.
// It measures the first round of polls: wall time (throughput), CPU, and the event-loop delay while
// the round starts and while its answers land; the parent scrapes it meanwhile and asks for memory.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { Writable } from 'node:stream';
import { parseConfig } from '../dist/config/load.js';
import { createExporter } from '../dist/exporter/exporter.js';
import { listen } from '../dist/http/server.js';
import { createLogger } from '../dist/log/logger.js';
import { staticTokenSource } from '../dist/api/token.js';

const [apiUrl, unitsArg, concurrencyArg] = process.argv.slice(2);
const units = Number(unitsArg);
const concurrency = Number(concurrencyArg);
if (!apiUrl || !(units > 0) || units % 10 !== 0 || !(concurrency > 0)) throw new Error('usage: polls.mjs <api url> <units, a multiple of 10> <concurrency>');

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
  schedule: "0 0 0 1 1 *"   # only the round at start runs during the benchmark
  summary: true
limits:
  maxSeries: 10000000
targets:
${targets.join('')}`;
const loaded = parseConfig(yaml, 'bench.yaml');
if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));

let logged = 0;
const log = createLogger({ level: 'info', format: 'json', destination: new Writable({ write: (_c, _e, done) => (logged++, done()) }) });
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

process.on('message', async (msg) => {
  if (msg.cmd === 'start') {
    eld.enable();
    const cpu = process.cpuUsage();
    const started = performance.now();
    // The scheduler starts every unit's first poll in one synchronous call: the event loop is
    // blocked for all of it, so it is measured apart from the landing of the answers.
    await exporter.start();
    const startMs = performance.now() - started;
    eld.reset();
    await new Promise((resolve) => {
      const timer = setInterval(() => exporter.store.ready && (clearInterval(timer), resolve()), 1);
    });
    const elapsedMs = performance.now() - started;
    const used = process.cpuUsage(cpu);
    const failed = exporter.store.statuses().filter((s) => s.up !== true).length;
    process.send({
      id: msg.id,
      units: exporter.store.unitCount,
      failed,
      elapsedMs,
      startMs,
      landingEldMaxMs: eld.max / 1e6,
      landingEldP99Ms: eld.percentile(99) / 1e6,
      cpuMsPerPoll: (used.user + used.system) / 1000 / units,
      logLines: logged,
    });
    eld.disable();
  } else if (msg.cmd === 'memory') {
    const m = process.memoryUsage();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, Math.round(sp.physical_space_size / 2 ** 20)]));
    process.send({ id: msg.id, rss: m.rss, peakRss: process.resourceUsage().maxRSS * 1024, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, spacesMiB: spaces });
  } else if (msg.cmd === 'exit') {
    await exporter.stop();
    server.closeAllConnections();
    server.close(() => process.exit(0));
  }
});
process.send({ ready: true, port: server.address().port });
