// `node bench/soak.mjs [--minutes=60] [--units=10000] [--concurrency=16] [--sample=60] [--flags="…"] [--out=file.json]`
// Whether the exporter's memory settles over a long run, as it must in a process that runs for
// months. It runs polls.mjs (the whole exporter, with the image's node flags unless --flags
// says otherwise) against the fake API, lets the cron schedule start a round of every unit
// every 15–60 s, scrapes it with gzip every 15 s as a Prometheus does, and every --sample
// seconds records resident memory, the heap in use after the last mark-compact (what is live,
// without forcing a GC), old space as the OS sees it, and the polls done and failed.
// It ends with the growth between the first sample after the warm-up (a fifth of the run) and
// the end. The benchmark's CPU pinning is not used: this measures memory, not latency.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { parseArgs } from 'node:util';
import { imageNodeFlags, roundPeriod, scrape, sleep, spawnChild } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    units: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    sample: { type: 'string', default: '60' },
    flags: { type: 'string' },
    out: { type: 'string' },
  },
});
const minutes = Number(args.minutes);
const units = Number(args.units);
const concurrency = Number(args.concurrency);
const sampleMs = Number(args.sample) * 1000;
if (!(minutes > 0) || !(sampleMs > 0)) throw new Error('--minutes and --sample must be positive');
const API_LATENCY_MS = 20;
const SCRAPE_INTERVAL_MS = 15_000;
const flags = args.flags === undefined ? imageNodeFlags() : args.flags.split(' ').filter(Boolean);
const MiB = 2 ** 20;

const api = spawnChild('fake-api.mjs', [API_LATENCY_MS]);
const { port: apiPort } = await api.ready;
const period = roundPeriod(units, concurrency, API_LATENCY_MS);
const exporter = spawnChild('polls.mjs', [`http://127.0.0.1:${apiPort}`, units, concurrency, period], { nodeOptions: flags });
const samples = [];
let scrapes = 0;
try {
  const { port } = await exporter.ready;
  await exporter.call('first');
  const started = performance.now();
  const end = started + minutes * 60_000;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const scraping = (async () => {
    while (performance.now() < end) {
      await scrape(agent, port, true);
      scrapes++;
      await sleep(Math.min(SCRAPE_INTERVAL_MS, Math.max(0, end - performance.now())));
    }
  })();

  console.log(`${units} units at concurrency ${concurrency}, a round every ${period} s, for ${minutes} min; node ${flags.join(' ') || '(no flags)'}`);
  console.log('minute   RSS MiB   heap after MC MiB   old space MiB   mark-compacts   polls       failed');
  for (let next = started + sampleMs; next <= end + 1; next += sampleMs) {
    await sleep(next - performance.now());
    const m = await exporter.call('memory');
    const sample = {
      minute: (performance.now() - started) / 60_000,
      rssBytes: m.rss,
      heapAfterMajorGcBytes: m.heapUsedAfterMajorGc,
      oldSpaceMiB: m.spacesMiB.old_space,
      majorGcs: m.majorGcs,
      polls: m.polls,
      failed: m.failed,
    };
    samples.push(sample);
    console.log(
      [sample.minute.toFixed(1).padStart(6), (m.rss / MiB).toFixed(0).padStart(9), mib(m.heapUsedAfterMajorGc).padStart(19), String(sample.oldSpaceMiB).padStart(15), String(m.majorGcs).padStart(15), String(m.polls).padStart(11), String(m.failed).padStart(12)].join(' '),
    );
  }
  await scraping;
  agent.destroy();
} finally {
  await exporter.exit();
  await api.exit();
}

// Growth from the first sample after the warm-up to the last: the first fifth of a run is V8
// sizing its heap and the store reaching its size.
const warm = samples.find((s) => s.minute >= minutes / 5) ?? samples[0];
const last = samples.at(-1);
const growth = {
  fromMinute: warm.minute,
  toMinute: last.minute,
  rssMiB: (last.rssBytes - warm.rssBytes) / MiB,
  // null until a mark-compact has run
  heapAfterMajorGcMiB: warm.heapAfterMajorGcBytes === null || last.heapAfterMajorGcBytes === null ? null : (last.heapAfterMajorGcBytes - warm.heapAfterMajorGcBytes) / MiB,
  oldSpaceMiB: last.oldSpaceMiB - warm.oldSpaceMiB,
  maxRssMiB: Math.max(...samples.map((s) => s.rssBytes)) / MiB,
};
console.log(
  `\nfrom minute ${growth.fromMinute.toFixed(1)} to ${growth.toMinute.toFixed(1)}: RSS ${signed(growth.rssMiB)} MiB, heap after mark-compact ${signed(growth.heapAfterMajorGcMiB)} MiB, ` +
    `old space ${signed(growth.oldSpaceMiB)} MiB; RSS at most ${growth.maxRssMiB.toFixed(0)} MiB; ${last.polls} polls (${last.failed} failed), ${scrapes} scrapes`,
);
const out = args.out ?? new URL(`results/soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url).pathname;
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(out, `${JSON.stringify({ units, concurrency, periodSeconds: period, minutes, flags, scrapes, samples, growth }, null, 2)}\n`);
console.log(`wrote ${out}`);

function signed(n) {
  return n === null ? 'n/a' : `${n >= 0 ? '+' : ''}${n.toFixed(1)}`;
}

function mib(bytes) {
  return bytes === null ? '–' : (bytes / MiB).toFixed(1);
}
