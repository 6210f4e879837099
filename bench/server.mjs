// One benchmark variant in its own process, serving /metrics on a loopback port:
//   A  prom-client: a registry holding the series, rendered (and gzipped) on every scrape;
//   B  exporter:    the exporter's MetricStore and HTTP handler, the modules main.js runs;
//   C  static:      node:http sending B's exact bytes from a Buffer built once (the physical limit).
//   B0 exporter without the process metrics prom-client renders per scrape (the store path alone).
// The parent drives it over IPC: `reset` starts a measurement window, `report` ends it with the
// CPU time and event-loop delay spent serving, `memory` reports the retained bytes per series.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { gzip as gzipCallback, constants as zlib } from 'node:zlib';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { pino } from 'pino';
import { generate, fillRegistry, fillStore } from './data.mjs';
import { MetricStore } from '../dist/store/store.js';
import { CONTENT_TYPE } from '../dist/store/exposition.js';
import { createHandler, drained, listen, renderMetrics } from '../dist/http/server.js';
import { TurnBudget } from '../dist/loop/turns.js';
import { createTelemetry } from '../dist/telemetry/telemetry.js';

const gzip = promisify(gzipCallback);
const SLICE = 256 * 1024;
const [variant, seriesArg] = process.argv.slice(2);
const wanted = Number(seriesArg);
if (!['A', 'B', 'B0', 'C'].includes(variant) || !(wanted > 0)) throw new Error('usage: server.mjs A|B|B0|C <series>');
if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc');

/** Heap plus memory outside it (Buffers, strings' external backing), after full collections. */
function retained() {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

// The unit definitions and their poll results stay referenced for the whole run in every variant,
// as the exporter's scheduler keeps its poll units: what is measured is what the registry, the
// store or the static Buffer adds on top of them for the series.
const units = generate(wanted);
const series = units.length * 15;
// The exporter's own metrics (process, runtime and its counters), rendered per scrape by B and
// by C's build; A is a prom-client exporter, whose registry renders its default metrics too.
const telemetry = createTelemetry({ version: 'bench', processMetrics: variant !== 'B0' });
const registry = new Registry();
if (variant === 'A') collectDefaultMetrics({ register: registry });
// Time spent rendering per scrape: all of A's registry; the exporter's own metrics in B.
let registryMs = 0;
const timed = (render) => async () => {
  const started = performance.now();
  const text = await render();
  registryMs += performance.now() - started;
  return text;
};
const ownMetrics = timed(telemetry.render);
const baseline = retained();
let handler;

if (variant === 'A') {
  fillRegistry(registry, units);
  const render = timed(() => registry.metrics());
  handler = async (req, res) => {
    const text = await render();
    res.setHeader('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE);
    const body = acceptsGzip(req) ? await gzip(text, { level: zlib.Z_BEST_SPEED }) : text;
    if (body !== text) res.setHeader('Content-Encoding', 'gzip');
    res.end(body);
  };
} else {
  // One share of each event-loop turn for the store's rebuilds and the scrapes, as the exporter has.
  const turns = new TurnBudget();
  const store = new MetricStore({ turns });
  fillStore(store, units);
  const served = createHandler({
    store,
    turns,
    ownMetrics,
    telemetryPath: '/metrics',
    version: 'bench',
    log: pino({ level: 'silent' }),
    enableLifecycle: false,
    reload: async () => ({ ok: true }),
  });
  if (variant === 'B' || variant === 'B0') {
    handler = served;
  } else {
    // The same bytes as B, rendered once and then only sent: in slices of 256 KiB as B writes
    // its pieces, which is faster here than one write of the whole Buffer (a 21 MB write keeps
    // the event loop in the kernel for tens of milliseconds).
    const plain = Buffer.concat(await renderMetrics(store, telemetry.render));
    const zipped = await gzip(plain, { level: zlib.Z_BEST_SPEED });
    handler = async (req, res) => {
      const gz = acceptsGzip(req);
      const body = gz ? zipped : plain;
      res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': body.length, ...(gz ? { 'Content-Encoding': 'gzip' } : {}) });
      for (let offset = 0; offset < body.length; offset += SLICE) {
        if (res.destroyed) return;
        if (!res.write(body.subarray(offset, offset + SLICE))) await drained(res);
      }
      res.end();
    };
  }
}

function acceptsGzip(req) {
  return /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
}

let scrapes = 0;
const server = await listen((req, res) => {
  scrapes++;
  handler(req, res);
}, { host: '127.0.0.1', port: 0 });

const eld = monitorEventLoopDelay({ resolution: 1 });
eld.enable();
let cpuStart = process.cpuUsage();
let scrapesStart = 0;

process.on('message', async (msg) => {
  if (msg.cmd === 'reset') {
    eld.reset();
    cpuStart = process.cpuUsage();
    scrapesStart = scrapes;
    registryMs = 0;
    process.send({ id: msg.id });
  } else if (msg.cmd === 'report') {
    const cpu = process.cpuUsage(cpuStart);
    process.send({ id: msg.id, scrapes: scrapes - scrapesStart, registryMs, cpuMs: (cpu.user + cpu.system) / 1000, eldMaxMs: eld.max / 1e6, eldP99Ms: eld.percentile(99) / 1e6 });
  } else if (msg.cmd === 'memory') {
    const bytes = retained() - baseline;
    void units.length; // referenced here, so the units stay alive until now
    process.send({ id: msg.id, retainedBytes: bytes, bytesPerSeries: bytes / series, rss: process.memoryUsage().rss });
  } else if (msg.cmd === 'exit') {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  }
});
process.send({ ready: true, port: server.address().port, series });
