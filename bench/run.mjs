// `npm run bench [-- --quick] [-- --out file.json]`: every variant side by side, in one run, each
// server in its own child process; this process is the scraper (two when a HA pair is simulated).
// Prints a table and writes bench/results/<date>.json. See docs/benchmarks.md for what is measured.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { canPin, imageNodeFlags, percentile, pin, roundPeriod, scrape, sleep, spawnChild, startPollRig } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    sizes: { type: 'string' },
    pin: { type: 'boolean', default: true },
    only: { type: 'string' },
    polls: { type: 'string' },
    steady: { type: 'boolean', default: true },
  },
  allowNegative: true,
});
const QUICK = args.quick;
const SIZES = args.sizes ? args.sizes.split(',').map(Number) : [1_000, 10_000, 100_000];
// B0 is B without the process_* and nodejs_* metrics prom-client renders on every scrape: the
// store's path alone, for comparison; the targets are checked on B, the exporter as it runs.
const VARIANTS = { A: 'prom-client', B: 'exporter', C: 'static Buffer', B0: 'exporter without process metrics' };
// The node flags the image's ENTRYPOINT runs the exporter with (a small young generation, GC
// on the main thread; see the Dockerfile): every server below runs with them, as shipped.
// The 10k-unit poll round also runs with plain `node`, for comparison.
const SHIPPED = imageNodeFlags();
// Each window lasts `ms`, with at least `min` scrapes per scraper (`minSlow` for prom-client),
// after `warmup` rounds of scrapes (`warmupSlow` for prom-client: at 100k series a scrape takes
// about a second, so --quick makes it one unwarmed scrape per window to finish within a minute).
const BUDGET = QUICK
  ? { warmup: 1, warmupSlow: 0, min: 4, minSlow: 1, max: 200, ms: 120 }
  : { warmup: 3, warmupSlow: 3, min: 30, minSlow: 15, max: 3000, ms: 2000 };
const GAP_MS = 10;
// Poll runs: units and api.concurrency; each measures the first round (which builds every
// unit's state) and, with `steady`, the schedule's next round (as every later one runs). The
// 10k-unit runs are where RSS is measured. `ceiling`: also time a bare undici client making the
// same requests (see ceiling.mjs). `nodeOptions`: V8 flags for the exporter's process.
// --quick polls its 10k units at concurrency 64, a round of 4-5 s instead of 13.
const POLL_RUNS = args.polls
  ? args.polls.split(',').map((run) => ({ units: Number(run.split('@')[0]), concurrency: Number(run.split('@')[1]), ceiling: true, steady: args.steady, nodeOptions: SHIPPED }))
  : QUICK
    ? [
        { units: 600, concurrency: 4, ceiling: true, steady: false, nodeOptions: SHIPPED },
        { units: 10_000, concurrency: 64, ceiling: false, steady: false, nodeOptions: SHIPPED },
      ]
    : [
        { units: 2_000, concurrency: 4, ceiling: true, steady: true, nodeOptions: SHIPPED },
        { units: 10_000, concurrency: 16, ceiling: true, steady: true, nodeOptions: SHIPPED },
        { units: 10_000, concurrency: 16, ceiling: false, steady: true, nodeOptions: [] },
        { units: 10_000, concurrency: 64, ceiling: true, steady: false, nodeOptions: SHIPPED },
      ];
const API_LATENCY_MS = 20;
const TARGETS = { speedup: 10, vsStatic: 1.5, eldMaxMs: 10, heapRatio: 0.5, throughput: 0.9, rssBytes: 300e6 };

const here = new URL('.', import.meta.url);

// The measured servers get CPU 0 (one is scraped at a time); this process (the scrapers) and the fake API share
// CPU 1, as Prometheus and the Flashback API would run elsewhere. Needs taskset (util-linux).
const PIN = args.pin && canPin();
const pinned = (pid, cpu) => PIN && pin(pid, cpu);
pinned(process.pid, 1);
const range = (n) => Array.from({ length: n }, (_, i) => i);

/**
 * One measurement window: `scrapers` clients scrape one server (each waiting GAP_MS between its
 * scrapes) for BUDGET.ms and at least `min` scrapes each; the server reports the CPU time and
 * event-loop delay of the window.
 */
async function window(server, others, agent, gzip, scrapers, min) {
  // The other servers are stopped for the window: idle, they still run timers and, after their
  // own windows, garbage collections (prom-client's heap at 100k series is hundreds of MB) that
  // would land on the shared CPU in the middle of this one's.
  for (const other of others) other.pause();
  try {
    return await measureWindow(server, agent, gzip, scrapers, min);
  } finally {
    for (const other of others) other.resume();
  }
}

/** The window itself, the other servers stopped. */
async function measureWindow(server, agent, gzip, scrapers, min) {
  await server.call('reset');
  const latencies = [];
  let bytes = 0;
  const end = performance.now() + BUDGET.ms;
  await Promise.all(
    range(scrapers).map(async () => {
      for (let n = 0; n < min || (n < BUDGET.max && performance.now() < end); n++) {
        const r = await scrape(agent, server.port, gzip);
        latencies.push(r.ms);
        bytes = r.bytes;
        await sleep(GAP_MS);
      }
    }),
  );
  return { latencies, bytes, report: await server.call('report') };
}

/**
 * Scrape latency, CPU and event-loop delay of the three variants at one size, then their memory.
 * The three servers run at once (pinned to the same CPU, idle but for the one scraped), and B
 * and C are measured in alternating windows, B C B C, so that both see the machine in the same
 * state: the ratio between them is what matters, and this machine's speed drifts.
 */
async function benchSize(size) {
  const servers = {};
  for (const variant of Object.keys(VARIANTS)) servers[variant] = spawnChild('server.mjs', [variant, size], { exposeGc: true, nodeOptions: SHIPPED });
  try {
    let series;
    for (const server of Object.values(servers)) {
      const ready = await server.ready;
      server.port = ready.port;
      series = ready.series;
      pinned(server.pid, 0);
    }
    const rows = [];
    for (const gzip of [false, true]) {
      for (const scrapers of [1, 2]) {
        const agents = Object.fromEntries(Object.keys(servers).map((v) => [v, new Agent({ keepAlive: true, maxSockets: scrapers })]));
        const acc = Object.fromEntries(Object.keys(servers).map((v) => [v, { latencies: [], cpuMs: 0, registryMs: 0, scrapes: 0, eldMaxMs: 0, eldP99Ms: 0, bytes: 0 }]));
        for (const v of Object.keys(servers)) {
          const rounds = v === 'A' ? BUDGET.warmupSlow : BUDGET.warmup;
          for (let i = 0; i < rounds; i++) await Promise.all(range(scrapers).map(() => scrape(agents[v], servers[v].port, gzip)));
        }
        // prom-client is measured once, with fewer scrapes: it is slower by far more than the noise.
        const order = ['A', 'B', 'C', 'B0', 'B', 'C', 'B0'];
        for (const v of order) {
          const others = Object.entries(servers).filter(([other]) => other !== v).map(([, server]) => server);
          const w = await window(servers[v], others, agents[v], gzip, scrapers, v === 'A' ? BUDGET.minSlow : BUDGET.min);
          const a = acc[v];
          a.latencies.push(...w.latencies);
          a.cpuMs += w.report.cpuMs;
          a.registryMs += w.report.registryMs;
          a.scrapes += w.report.scrapes;
          a.eldMaxMs = Math.max(a.eldMaxMs, w.report.eldMaxMs);
          a.eldP99Ms = Math.max(a.eldP99Ms, w.report.eldP99Ms);
          a.bytes = w.bytes;
        }
        for (const agent of Object.values(agents)) agent.destroy();
        for (const [variant, a] of Object.entries(acc)) {
          const sorted = a.latencies.sort((x, y) => x - y);
          rows.push({
            variant,
            series,
            encoding: gzip ? 'gzip' : 'identity',
            scrapers,
            scrapes: sorted.length,
            p50Ms: percentile(sorted, 50),
            p99Ms: percentile(sorted, 99),
            meanMs: sorted.reduce((x, y) => x + y, 0) / sorted.length,
            cpuMsPerScrape: a.cpuMs / a.scrapes,
            registryMsPerScrape: a.registryMs / a.scrapes,
            eldMaxMs: a.eldMaxMs,
            eldP99Ms: a.eldP99Ms,
            bytes: a.bytes,
          });
        }
      }
    }
    const memory = [];
    for (const [variant, server] of Object.entries(servers)) {
      const m = await server.call('memory');
      memory.push({ variant, series, bytesPerSeries: m.bytesPerSeries, retainedBytes: m.retainedBytes });
    }
    return { rows, memory };
  } finally {
    await Promise.all(Object.values(servers).map((server) => server.exit()));
  }
}


/**
 * The exporter polling `units` units against the fake API, scraped (gzip) every 250 ms meanwhile:
 * its first round and, with `steady`, the schedule's next one. One row per round.
 */
async function benchPolls({ units, concurrency, ceiling, steady, nodeOptions = [] }) {
  // Beside the exporter on its CPU, the idle process: the event-loop delay of a process doing
  // nothing, per round.
  const { api, apiPort, exporter, idle, port, exit } = await startPollRig({
    units,
    concurrency,
    latencyMs: API_LATENCY_MS,
    period: steady ? roundPeriod(units, concurrency, API_LATENCY_MS) : 0,
    nodeOptions,
    pinTo: (pid) => pinned(pid, 0),
  });
  try {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    /** A round, with the exporter scraped meanwhile and the fake API's counts for it. */
    const measure = async (cmd) => {
      await api.call('reset');
      let landing = true;
      const during = [];
      const scraping = (async () => {
        while (landing) {
          during.push((await scrape(agent, port, true)).ms);
          await sleep(250);
        }
      })();
      const round = await exporter.call(cmd);
      const to = Number(process.hrtime.bigint()) / 1e6;
      const floor = await idle.call('window', { from: to - round.elapsedMs, to });
      landing = false;
      await scraping;
      during.sort((a, b) => a - b);
      return { round, floor, api: await api.call('stats'), during };
    };
    const rounds = [['first', await measure('first')]];
    if (steady) rounds.push(['steady', await measure('steady')]);
    // Settled: what a Prometheus pair sees between poll rounds, and the memory it all takes.
    const plain = await scrape(agent, port, false, true);
    const zipped = await scrape(agent, port, true, true);
    // The process_* and nodejs_* values move between two scrapes; every other line must match.
    const settled = (text) => text.split('\n').filter((l) => !/^(# (HELP|TYPE) )?(process|nodejs)_/.test(l));
    if (settled(gunzipSync(zipped.body).toString()).join('\n') !== settled(plain.body.toString()).join('\n')) {
      throw new Error('gzip /metrics does not decompress to the identity /metrics');
    }
    const series = plain.body.toString().split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    const memory = await exporter.call('memory');
    agent.destroy();
    await exporter.exit();
    let ceilingPerS;
    if (ceiling) {
      await api.call('reset');
      const bare = spawnChild('ceiling.mjs', [`http://127.0.0.1:${apiPort}`, units, concurrency]);
      try {
        await bare.ready;
        pinned(bare.pid, 0);
        const r = await bare.call('start');
        if (r.failed > 0) throw new Error(`ceiling run: ${r.failed} requests failed`);
        ceilingPerS = r.units / (r.elapsedMs / 1000);
      } finally {
        await bare.exit();
      }
    }
    const ideal = concurrency / (API_LATENCY_MS / 1000);
    return rounds.map(([name, { round, floor, api: counts, during }]) => {
      const throughput = round.units / (round.elapsedMs / 1000);
      return {
        round: name,
        units: round.units,
        concurrency,
        nodeOptions: nodeOptions.join(' '),
        apiLatencyMs: API_LATENCY_MS,
        failed: round.failed,
        elapsedMs: round.elapsedMs,
        throughputPerS: throughput,
        idealPerS: ideal,
        ofIdeal: throughput / ideal,
        ceilingPerS,
        ofCeiling: ceilingPerS === undefined ? undefined : throughput / ceilingPerS,
        apiRequests: counts.requests,
        apiConnections: counts.connections,
        apiMaxInFlight: counts.maxInFlight,
        cpuMsPerPoll: round.cpuMsPerPoll,
        startMs: round.startMs,
        landingEldMaxMs: round.landingEldMaxMs,
        landingEldP99Ms: round.landingEldP99Ms,
        idleEldMaxMs: floor.maxMs,
        markCompacts: round.markCompacts,
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
    });
  } finally {
    await exit();
  }
}

function machine() {
  const model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return { cpu: model, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, pinned: PIN, loadAverageAtStart: loadavg()[0] };
}

// ---- run ----
const started = performance.now();
const info = machine();
console.log(`flashback-exporter benchmark${QUICK ? ' (--quick)' : ''}: ${info.cpu}, ${info.cores} cores, Node ${info.node}${PIN ? ', server pinned to CPU 0' : ''}`);
if (info.loadAverageAtStart > info.cores / 2) {
  console.log(`  note: load average ${info.loadAverageAtStart.toFixed(1)} on ${info.cores} cores: other work is running, and timings will be noisy`);
}
const scrapeRows = [];
const memoryRows = [];
for (const size of args.only === 'polls' ? [] : SIZES) {
  process.stdout.write(`  scraping ${Object.values(VARIANTS).slice(0, 3).join(', ')} at ${size} series...`);
  const { rows, memory } = await benchSize(size);
  scrapeRows.push(...rows);
  memoryRows.push(...memory);
  const p50 = (v) => rows.find((r) => r.variant === v && r.encoding === 'identity' && r.scrapers === 1).p50Ms.toFixed(2);
  process.stdout.write(` identity p50 ${p50('A')} / ${p50('B')} / ${p50('C')} ms\n`);
}
const pollRows = [];
for (const run of args.only === 'scrape' ? [] : POLL_RUNS) {
  process.stdout.write(`  polling ${run.units} units at concurrency ${run.concurrency}...`);
  const rows = await benchPolls(run);
  pollRows.push(...rows);
  process.stdout.write(` ${rows.map((r) => `${r.round} ${r.throughputPerS.toFixed(0)}/s`).join(', ')}\n`);
}

// ---- ratios ----
function f(n, d = 2) {
  return n === undefined || Number.isNaN(n) ? '-' : n >= 100 ? n.toFixed(0) : n.toFixed(d);
}
function flagsNote(r) {
  return r.nodeOptions === SHIPPED.join(' ') ? '' : r.nodeOptions ? `, node ${r.nodeOptions}` : ', plain node';
}
const largest = Math.max(0, ...scrapeRows.map((r) => r.series));
const row = (variant, series, encoding, scrapers) => scrapeRows.find((r) => r.variant === variant && r.series === series && r.encoding === encoding && r.scrapers === scrapers);
const checks = [];
const check = (name, value, target, met, unit = '') => checks.push({ name, value, target, met, unit });
for (const encoding of scrapeRows.length > 0 ? ['identity', 'gzip'] : []) {
  for (const scrapers of [1, 2]) {
    const [a, b, c, b0] = ['A', 'B', 'C', 'B0'].map((v) => row(v, largest, encoding, scrapers));
    for (const p of ['p50Ms', 'p99Ms']) {
      const label = `${encoding}, ${scrapers} scraper${scrapers > 1 ? 's' : ''}, ${p.slice(0, 3)}`;
      check(`${largest} series ${label}: prom-client / exporter`, a[p] / b[p], `>= ${TARGETS.speedup}`, a[p] / b[p] >= TARGETS.speedup, '×');
      check(
        `${largest} series ${label}: exporter / static Buffer (without process metrics: ${f(b0[p] / c[p])}×)`,
        b[p] / c[p],
        `<= ${TARGETS.vsStatic}`,
        b[p] / c[p] <= TARGETS.vsStatic,
        '×',
      );
    }
  }
}
const eldMax = (variant) => Math.max(...scrapeRows.filter((r) => r.variant === variant).map((r) => r.eldMaxMs));
if (scrapeRows.length > 0) {
  check(
    `event-loop delay max while serving scrapes, all sizes (static Buffer: ${f(eldMax('C'), 1)} ms, prom-client: ${f(eldMax('A'), 1)} ms)`,
    eldMax('B'),
    `< ${TARGETS.eldMaxMs} ms`,
    eldMax('B') < TARGETS.eldMaxMs,
    ' ms',
  );
}
for (const r of pollRows) {
  check(`event-loop delay max while ${r.units} units' polls land, ${r.round} round${flagsNote(r)} (p99 ${f(r.landingEldP99Ms, 1)} ms; an idle process on its CPU: ${f(r.idleEldMaxMs, 1)} ms)`, r.landingEldMaxMs, `< ${TARGETS.eldMaxMs} ms`, r.landingEldMaxMs < TARGETS.eldMaxMs, ' ms');
}
const memA = memoryRows.find((m) => m.variant === 'A' && m.series === largest);
const memB = memoryRows.find((m) => m.variant === 'B' && m.series === largest);
if (memA && memB) check(`heap+external per series at ${largest}: exporter / prom-client (${memB.bytesPerSeries.toFixed(0)} B / ${memA.bytesPerSeries.toFixed(0)} B)`, memB.bytesPerSeries / memA.bytesPerSeries, `<= ${TARGETS.heapRatio}`, memB.bytesPerSeries / memA.bytesPerSeries <= TARGETS.heapRatio, '×');
for (const r of pollRows) {
  const bare = r.ofCeiling === undefined ? '' : ` (bare undici: ${f((r.ceilingPerS / r.idealPerS) * 100, 1)} %)`;
  check(`poll throughput, ${r.units} units at concurrency ${r.concurrency}, ${r.round} round${flagsNote(r)}, ${r.apiLatencyMs} ms API: of ideal${bare}`, r.ofIdeal, `>= ${TARGETS.throughput}`, r.ofIdeal >= TARGETS.throughput && r.failed === 0);
  check(`keep-alive: sockets opened for ${r.apiRequests} requests at concurrency ${r.concurrency}, ${r.round} round`, r.apiConnections, `<= ${r.concurrency}`, r.apiConnections <= r.concurrency && r.apiRequests === r.units);
}
// Peak RSS is the process's whole life, both rounds: reported once per run.
for (const r of pollRows.filter((p) => p.units === 10_000 && p.round === 'first')) {
  check(`peak RSS at ${r.units} units with summary statistics (${r.series} series)${flagsNote(r)}`, r.peakRssBytes / 1e6, `< ${TARGETS.rssBytes / 1e6} MB`, r.peakRssBytes < TARGETS.rssBytes, ' MB');
}

// ---- report ----
const table = (header, rows) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  return [header, widths.map((w) => '-'.repeat(w)), ...rows].map((r) => r.map((cell, i) => String(cell).padStart(widths[i])).join('  ')).join('\n');
};
console.log('\nScrape latency (ms, p50 / p99), CPU per scrape (ms) and event-loop delay max (ms), per variant:');
const scrapeTable = [];
for (const size of [...new Set(scrapeRows.map((r) => r.series))]) {
  for (const encoding of ['identity', 'gzip']) {
    for (const scrapers of [1, 2]) {
      const [a, b, c, b0] = ['A', 'B', 'C', 'B0'].map((v) => row(v, size, encoding, scrapers));
      scrapeTable.push([
        size, encoding, scrapers, `${(b.bytes / 1024).toFixed(0)} KiB`,
        `${f(a.p50Ms)} / ${f(a.p99Ms)}`, `${f(b.p50Ms)} / ${f(b.p99Ms)}`, `${f(c.p50Ms)} / ${f(c.p99Ms)}`, `${f(b0.p50Ms)} / ${f(b0.p99Ms)}`,
        `${f(a.p50Ms / b.p50Ms, 1)}×`, `${f(b.p50Ms / c.p50Ms)}×`, `${f(b0.p50Ms / c.p50Ms)}×`,
        `${f(a.cpuMsPerScrape)} / ${f(b.cpuMsPerScrape)} / ${f(c.cpuMsPerScrape)}`,
        `${f(a.eldMaxMs, 1)} / ${f(b.eldMaxMs, 1)} / ${f(c.eldMaxMs, 1)}`,
        `${a.scrapes}/${b.scrapes}/${c.scrapes}`,
      ]);
    }
  }
}
console.log(table(['series', 'encoding', 'scr', 'size', 'A prom-client', 'B exporter', 'C static', 'B0 no proc.', 'A/B p50', 'B/C p50', 'B0/C p50', 'CPU A / B / C', 'ELD max A / B / C', 'n'], scrapeTable));
console.log('\nRetained heap + external memory per series (bytes), after full GCs, cached snapshot and gzip included:');
console.log(table(['series', 'A prom-client', 'B exporter', 'C static', 'B/A'], [...new Set(memoryRows.map((m) => m.series))].map((s) => {
  const [a, b, c] = ['A', 'B', 'C'].map((v) => memoryRows.find((m) => m.variant === v && m.series === s).bytesPerSeries);
  return [s, f(a, 0), f(b, 0), f(c, 0), f(b / a)];
})));
console.log(`\nPolls against a fake API with ${API_LATENCY_MS} ms latency (the whole exporter, scraped with gzip every 250 ms meanwhile):`);
console.log(`(node flags: "shipped" are the image's, ${SHIPPED.join(' ')}; RSS is after both rounds)`);
console.log(table(['units', 'conc.', 'node flags', 'round', 'time s', 'polls/s', 'ideal/s', 'of ideal', 'bare undici/s', 'of bare', 'requests', 'sockets', 'CPU/poll ms', 'start (blocking) ms', 'ELD landing max', 'ELD p99', 'ELD idle proc.', 'mark-compacts', 'scrape p50/max', 'series', 'RSS MB', 'peak RSS MB'], pollRows.map((r) => [
  r.units, r.concurrency, r.nodeOptions === SHIPPED.join(' ') ? 'shipped' : r.nodeOptions || 'plain', r.round, f(r.elapsedMs / 1000), f(r.throughputPerS, 0), f(r.idealPerS, 0), `${(r.ofIdeal * 100).toFixed(1)}%`, f(r.ceilingPerS, 0), r.ofCeiling === undefined ? '-' : `${(r.ofCeiling * 100).toFixed(1)}%`, r.apiRequests, r.apiConnections,
  f(r.cpuMsPerPoll, 3), f(r.startMs, 0), f(r.landingEldMaxMs, 1), f(r.landingEldP99Ms, 1), f(r.idleEldMaxMs, 1), r.markCompacts, `${f(r.scrapeWhileLandingP50Ms)} / ${f(r.scrapeWhileLandingMaxMs)}`, r.series,
  f(r.rssBytes / 1e6, 0), f(r.peakRssBytes / 1e6, 0),
])));
console.log('\nTargets of issue 5:');
for (const c of checks) console.log(`  ${c.met ? 'met ' : 'MISS'}  ${c.name}: ${f(c.value)}${c.unit} (target ${c.target})`);

info.loadAverageAtEnd = loadavg()[0];
const results = { date: new Date().toISOString(), quick: QUICK, machine: info, budget: BUDGET, scrape: scrapeRows, memory: memoryRows, polls: pollRows, checks, seconds: (performance.now() - started) / 1000 };
const out = args.out ?? new URL(`results/${results.date.replace(/[:.]/g, '-')}${QUICK ? '-quick' : ''}.json`, here).pathname;
mkdirSync(new URL('results/', here), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\n${checks.filter((c) => c.met).length} of ${checks.length} targets met in ${results.seconds.toFixed(0)} s; results in ${out}`);
