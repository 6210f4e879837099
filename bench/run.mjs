// `npm run bench [-- --quick] [-- --out file.json]`: every variant side by side, in one run, each
// server in its own child process; this process is the scraper (two when a HA pair is simulated).
// Prints a table and writes bench/results/<date>.json. See docs/benchmarks.md for what is measured.
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { cpus, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    sizes: { type: 'string' },
  },
});
const QUICK = args.quick;
const SIZES = args.sizes ? args.sizes.split(',').map(Number) : [1_000, 10_000, 100_000];
const VARIANTS = { A: 'prom-client', B: 'exporter', C: 'static Buffer' };
// Each measurement window runs for `ms` and at least `min` scrapes per scraper (at most `max`).
const BUDGET = QUICK ? { warmup: 1, min: 5, max: 200, ms: 400 } : { warmup: 3, min: 30, max: 3000, ms: 3000 };
// Poll rounds: units and api.concurrency. The 10k round is also where RSS is measured.
const POLL_RUNS = QUICK ? [{ units: 10_000, concurrency: 64 }] : [{ units: 2_000, concurrency: 8 }, { units: 10_000, concurrency: 64 }];
const API_LATENCY_MS = 20;
const TARGETS = { speedup: 10, vsStatic: 1.5, eldMaxMs: 10, heapRatio: 0.5, throughput: 0.9, rssBytes: 300 * 2 ** 20 };

const here = new URL('.', import.meta.url);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (n) => Array.from({ length: n }, (_, i) => i);

/** A child process speaking the small request/answer protocol of server.mjs, polls.mjs and fake-api.mjs. */
function spawnChild(script, argv, { exposeGc = false } = {}) {
  const child = fork(new URL(script, here), argv.map(String), { execArgv: exposeGc ? ['--expose-gc'] : [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  let next = 0;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const ready = new Promise((resolve, reject) => {
    child.on('message', (msg) => {
      if (msg.ready) return resolve(msg);
      waiting.get(msg.id)?.(msg);
      waiting.delete(msg.id);
    });
    void exited.then((code) => reject(new Error(`${script} ${argv.join(' ')} exited with ${code} before it was ready`)));
  });
  return {
    ready,
    call: (cmd) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        waiting.set(id, resolve);
        child.send({ cmd, id });
        void exited.then((code) => reject(new Error(`${script} exited with ${code} during ${cmd}`)));
      }),
    async exit() {
      if (child.exitCode === null) child.send({ cmd: 'exit' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** One GET /metrics, timed from the request to the last byte; the body is kept only when asked. */
function scrape(agent, port, gzip, keep = false) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = get({ host: '127.0.0.1', port, path: '/metrics', agent, headers: gzip ? { 'accept-encoding': 'gzip' } : {} }, (res) => {
      const chunks = [];
      let bytes = 0;
      res.on('data', (chunk) => {
        bytes += chunk.length;
        if (keep) chunks.push(chunk);
      });
      res.on('end', () => {
        const ms = performance.now() - started;
        if (res.statusCode !== 200) return reject(new Error(`GET /metrics: HTTP ${res.statusCode}`));
        if (gzip !== (res.headers['content-encoding'] === 'gzip')) return reject(new Error(`GET /metrics: unexpected content-encoding ${res.headers['content-encoding']}`));
        resolve({ ms, bytes, body: keep ? Buffer.concat(chunks) : undefined });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Nearest-rank percentile: with fewer than 100 samples, p99 is the maximum. */
function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Scrapes one server with `scrapers` concurrent clients for one measurement window. */
async function measure(server, port, gzip, scrapers) {
  const agent = new Agent({ keepAlive: true, maxSockets: scrapers });
  try {
    for (let i = 0; i < BUDGET.warmup; i++) await Promise.all(range(scrapers).map(() => scrape(agent, port, gzip)));
    await server.call('reset');
    const latencies = [];
    let bytes = 0;
    const end = performance.now() + BUDGET.ms;
    await Promise.all(
      range(scrapers).map(async () => {
        for (let n = 0; n < BUDGET.min || (n < BUDGET.max && performance.now() < end); n++) {
          const r = await scrape(agent, port, gzip);
          latencies.push(r.ms);
          bytes = r.bytes;
        }
      }),
    );
    const report = await server.call('report');
    latencies.sort((a, b) => a - b);
    return {
      scrapes: latencies.length,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      meanMs: latencies.reduce((a, b) => a + b, 0) / latencies.length,
      cpuMsPerScrape: report.cpuMs / report.scrapes,
      eldMaxMs: report.eldMaxMs,
      bytes,
    };
  } finally {
    agent.destroy();
  }
}

/** Scrape latency, CPU and event-loop delay of one variant at one size, then its memory. */
async function benchVariant(variant, size) {
  const server = spawnChild('server.mjs', [variant, size], { exposeGc: true });
  const { port, series } = await server.ready;
  try {
    const rows = [];
    for (const gzip of [false, true]) {
      for (const scrapers of [1, 2]) {
        rows.push({ variant, series, encoding: gzip ? 'gzip' : 'identity', scrapers, ...(await measure(server, port, gzip, scrapers)) });
      }
    }
    const memory = await server.call('memory');
    return { rows, memory: { variant, series, bytesPerSeries: memory.bytesPerSeries, retainedBytes: memory.retainedBytes } };
  } finally {
    await server.exit();
  }
}

/** The exporter polling `units` units against the fake API, scraped (gzip) every 250 ms meanwhile. */
async function benchPolls({ units, concurrency }) {
  const api = spawnChild('fake-api.mjs', [API_LATENCY_MS]);
  const { port: apiPort } = await api.ready;
  const exporter = spawnChild('polls.mjs', [`http://127.0.0.1:${apiPort}`, units, concurrency]);
  try {
    const { port } = await exporter.ready;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    let landing = true;
    const during = [];
    const scraping = (async () => {
      while (landing) {
        during.push((await scrape(agent, port, true)).ms);
        await sleep(250);
      }
    })();
    const round = await exporter.call('start');
    landing = false;
    await scraping;
    const api_ = await api.call('stats');
    // Settled: what a Prometheus pair sees between poll rounds, and the memory it all takes.
    const plain = await scrape(agent, port, false, true);
    const zipped = await scrape(agent, port, true, true);
    // The process_* and nodejs_* values move between two scrapes; every other line must match.
    const steady = (text) => text.split('\n').filter((l) => !/^(# (HELP|TYPE) )?(process|nodejs)_/.test(l));
    if (steady(gunzipSync(zipped.body).toString()).join('\n') !== steady(plain.body.toString()).join('\n')) {
      throw new Error('gzip /metrics does not decompress to the identity /metrics');
    }
    const series = plain.body.toString().split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    const memory = await exporter.call('memory');
    agent.destroy();
    const throughput = round.units / (round.elapsedMs / 1000);
    const ideal = concurrency / (API_LATENCY_MS / 1000);
    during.sort((a, b) => a - b);
    return {
      units: round.units,
      concurrency,
      apiLatencyMs: API_LATENCY_MS,
      failed: round.failed,
      elapsedMs: round.elapsedMs,
      throughputPerS: throughput,
      idealPerS: ideal,
      ofIdeal: throughput / ideal,
      apiRequests: api_.requests,
      apiConnections: api_.connections,
      apiMaxInFlight: api_.maxInFlight,
      cpuMsPerPoll: round.cpuMsPerPoll,
      startMs: round.startMs,
      startEldMaxMs: round.startEldMaxMs,
      landingEldMaxMs: round.landingEldMaxMs,
      landingEldP99Ms: round.landingEldP99Ms,
      scrapesWhileLanding: during.length,
      scrapeWhileLandingP50Ms: percentile(during, 50),
      scrapeWhileLandingMaxMs: during.at(-1),
      series,
      bytesIdentity: plain.bytes,
      bytesGzip: zipped.bytes,
      rssBytes: memory.rss,
      peakRssBytes: memory.peakRss,
      heapUsedBytes: memory.heapUsed,
      externalBytes: memory.external,
    };
  } finally {
    await exporter.exit();
    await api.exit();
  }
}

function machine() {
  const model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return { cpu: model, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version };
}

// ---- run ----
const started = performance.now();
const info = machine();
console.log(`flashback-exporter benchmark${QUICK ? ' (--quick)' : ''}: ${info.cpu}, ${info.cores} cores, Node ${info.node}`);
const scrapeRows = [];
const memoryRows = [];
for (const size of SIZES) {
  for (const variant of Object.keys(VARIANTS)) {
    process.stdout.write(`  ${VARIANTS[variant]} at ${size} series...`);
    const { rows, memory } = await benchVariant(variant, size);
    scrapeRows.push(...rows);
    memoryRows.push(memory);
    process.stdout.write(` p50 ${rows[0].p50Ms.toFixed(2)} ms\n`);
  }
}
const pollRows = [];
for (const run of POLL_RUNS) {
  process.stdout.write(`  polling ${run.units} units at concurrency ${run.concurrency}...`);
  const r = await benchPolls(run);
  pollRows.push(r);
  process.stdout.write(` ${r.throughputPerS.toFixed(0)}/s\n`);
}

// ---- ratios ----
const largest = Math.max(...scrapeRows.map((r) => r.series));
const row = (variant, series, encoding, scrapers) => scrapeRows.find((r) => r.variant === variant && r.series === series && r.encoding === encoding && r.scrapers === scrapers);
const checks = [];
const check = (name, value, target, met, unit = '') => checks.push({ name, value, target, met, unit });
for (const encoding of ['identity', 'gzip']) {
  for (const scrapers of [1, 2]) {
    const [a, b, c] = ['A', 'B', 'C'].map((v) => row(v, largest, encoding, scrapers));
    for (const p of ['p50Ms', 'p99Ms']) {
      const label = `${encoding}, ${scrapers} scraper${scrapers > 1 ? 's' : ''}, ${p.slice(0, 3)}`;
      check(`${largest} series ${label}: prom-client / exporter`, a[p] / b[p], `>= ${TARGETS.speedup}`, a[p] / b[p] >= TARGETS.speedup, '×');
      check(`${largest} series ${label}: exporter / static Buffer`, b[p] / c[p], `<= ${TARGETS.vsStatic}`, b[p] / c[p] <= TARGETS.vsStatic, '×');
    }
  }
}
const eldServing = Math.max(...scrapeRows.filter((r) => r.variant === 'B').map((r) => r.eldMaxMs));
const eldPromClient = Math.max(...scrapeRows.filter((r) => r.variant === 'A' && r.series === largest).map((r) => r.eldMaxMs));
check(`event-loop delay max while serving scrapes (all sizes; prom-client at ${largest}: ${eldPromClient.toFixed(1)} ms)`, eldServing, `< ${TARGETS.eldMaxMs} ms`, eldServing < TARGETS.eldMaxMs, ' ms');
for (const r of pollRows) {
  check(`event-loop delay max while ${r.units} units' polls land (scraped every 250 ms)`, r.landingEldMaxMs, `< ${TARGETS.eldMaxMs} ms`, r.landingEldMaxMs < TARGETS.eldMaxMs, ' ms');
}
const memA = memoryRows.find((m) => m.variant === 'A' && m.series === largest);
const memB = memoryRows.find((m) => m.variant === 'B' && m.series === largest);
check(`heap+external per series at ${largest}: exporter / prom-client (${memB.bytesPerSeries.toFixed(0)} B / ${memA.bytesPerSeries.toFixed(0)} B)`, memB.bytesPerSeries / memA.bytesPerSeries, `<= ${TARGETS.heapRatio}`, memB.bytesPerSeries / memA.bytesPerSeries <= TARGETS.heapRatio, '×');
for (const r of pollRows) {
  check(`poll throughput, ${r.units} units at concurrency ${r.concurrency}, ${r.apiLatencyMs} ms API: of ideal`, r.ofIdeal, `>= ${TARGETS.throughput}`, r.ofIdeal >= TARGETS.throughput && r.failed === 0);
  check(`keep-alive: sockets opened for ${r.apiRequests} requests at concurrency ${r.concurrency}`, r.apiConnections, `<= ${r.concurrency}`, r.apiConnections <= r.concurrency && r.apiRequests === r.units);
}
const big = pollRows.find((r) => r.units === 10_000);
if (big) check(`peak RSS at ${big.units} units with summary statistics (${big.series} series)`, big.peakRssBytes / 2 ** 20, `< ${TARGETS.rssBytes / 2 ** 20} MB`, big.peakRssBytes < TARGETS.rssBytes, ' MB');

// ---- report ----
const f = (n, d = 2) => (n === undefined ? '-' : n >= 100 ? n.toFixed(0) : n.toFixed(d));
const table = (header, rows) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  return [header, widths.map((w) => '-'.repeat(w)), ...rows].map((r) => r.map((cell, i) => String(cell).padStart(widths[i])).join('  ')).join('\n');
};
console.log('\nScrape latency (ms, p50 / p99), CPU per scrape (ms) and event-loop delay max (ms), per variant:');
const scrapeTable = [];
for (const size of [...new Set(scrapeRows.map((r) => r.series))]) {
  for (const encoding of ['identity', 'gzip']) {
    for (const scrapers of [1, 2]) {
      const [a, b, c] = ['A', 'B', 'C'].map((v) => row(v, size, encoding, scrapers));
      scrapeTable.push([
        size, encoding, scrapers, `${(b.bytes / 1024).toFixed(0)} KiB`,
        `${f(a.p50Ms)} / ${f(a.p99Ms)}`, `${f(b.p50Ms)} / ${f(b.p99Ms)}`, `${f(c.p50Ms)} / ${f(c.p99Ms)}`,
        `${f(a.p50Ms / b.p50Ms, 1)}×`, `${f(b.p50Ms / c.p50Ms)}×`,
        `${f(a.cpuMsPerScrape)} / ${f(b.cpuMsPerScrape)} / ${f(c.cpuMsPerScrape)}`,
        `${f(a.eldMaxMs, 1)} / ${f(b.eldMaxMs, 1)} / ${f(c.eldMaxMs, 1)}`,
        `${a.scrapes}/${b.scrapes}/${c.scrapes}`,
      ]);
    }
  }
}
console.log(table(['series', 'encoding', 'scr', 'size', 'A prom-client', 'B exporter', 'C static', 'A/B p50', 'B/C p50', 'CPU A / B / C', 'ELD max A / B / C', 'n'], scrapeTable));
console.log('\nRetained heap + external memory per series (bytes), after full GCs, cached snapshot and gzip included:');
console.log(table(['series', 'A prom-client', 'B exporter', 'C static', 'B/A'], [...new Set(memoryRows.map((m) => m.series))].map((s) => {
  const [a, b, c] = ['A', 'B', 'C'].map((v) => memoryRows.find((m) => m.variant === v && m.series === s).bytesPerSeries);
  return [s, f(a, 0), f(b, 0), f(c, 0), f(b / a)];
})));
console.log(`\nPolls against a fake API with ${API_LATENCY_MS} ms latency (the whole exporter, scraped with gzip every 250 ms meanwhile):`);
console.log(table(['units', 'conc.', 'time s', 'polls/s', 'ideal/s', 'of ideal', 'requests', 'sockets', 'CPU/poll ms', 'start ms', 'ELD start', 'ELD landing', 'scrape p50/max', 'series', 'RSS MB', 'peak RSS MB'], pollRows.map((r) => [
  r.units, r.concurrency, f(r.elapsedMs / 1000), f(r.throughputPerS, 0), f(r.idealPerS, 0), `${(r.ofIdeal * 100).toFixed(1)}%`, r.apiRequests, r.apiConnections,
  f(r.cpuMsPerPoll, 3), f(r.startMs, 0), f(r.startEldMaxMs, 1), f(r.landingEldMaxMs, 1), `${f(r.scrapeWhileLandingP50Ms)} / ${f(r.scrapeWhileLandingMaxMs)}`, r.series,
  f(r.rssBytes / 2 ** 20, 0), f(r.peakRssBytes / 2 ** 20, 0),
])));
console.log('\nTargets of issue 5:');
for (const c of checks) console.log(`  ${c.met ? 'met ' : 'MISS'}  ${c.name}: ${f(c.value)}${c.unit} (target ${c.target})`);

const results = { date: new Date().toISOString(), quick: QUICK, machine: info, budget: BUDGET, scrape: scrapeRows, memory: memoryRows, polls: pollRows, checks, seconds: (performance.now() - started) / 1000 };
const out = args.out ?? new URL(`results/${results.date.replace(/[:.]/g, '-')}${QUICK ? '-quick' : ''}.json`, here).pathname;
mkdirSync(new URL('results/', here), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\n${checks.filter((c) => c.met).length} of ${checks.length} targets met in ${results.seconds.toFixed(0)} s; results in ${out}`);
