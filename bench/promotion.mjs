// `node bench/promotion.mjs [--units=10000] [--concurrency=16] [--rounds=3] [--top=15] [--flags="…"]`
// What each poll round adds to V8's old generation, which is what starts the next mark-compact
// (the longest pauses of a poll round; see docs/benchmarks-history.md). It runs the exporter as
// run.mjs's poll rounds do (polls.mjs against the fake API, pinned, scraped with gzip every
// 250 ms) with promotion-trace.mjs preloaded, for the first round and then --rounds − 1 rounds
// of the schedule, and prints for each round the bytes that scavenges promoted, the bytes
// allocated directly in the old generation (code, large objects), and the GCs. Then one more
// round runs with the heap profiler sampling what outlives minor GCs, and the allocation sites
// of what it sampled are listed, by share; sampling slows allocation, so that round is not one
// of the measured ones.
// A round's window starts right after the previous one ends, so it holds the quiet before its
// tick too (scrapes only). Needs `npm run build` first. In most runs so far one steady round
// promoted 38 MB, which no round has done with `--trace-gc-nvp` alone; it comes with this
// script's messages between rounds even when they measure nothing, so check a surprising round
// that way too (docs/benchmarks-history.md, the ninth session).
import { Agent } from 'node:http';
import { parseArgs } from 'node:util';
import { canPin, imageNodeFlags, pin, roundPeriod, scrape, sleep, spawnChild } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    units: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    top: { type: 'string', default: '15' },
    flags: { type: 'string' },
  },
});
const units = Number(args.units);
const concurrency = Number(args.concurrency);
const rounds = Number(args.rounds);
const top = Number(args.top);
if (!(rounds >= 1) || !(top >= 0)) throw new Error('--rounds must be at least 1 and --top at least 0');
// Rounds measured without sampling, the first among them; one sampled round follows.
const API_LATENCY_MS = 20;
const flags = args.flags === undefined ? imageNodeFlags() : args.flags.split(' ').filter(Boolean);
const MB = 1e6;

const PIN = canPin();
if (PIN) pin(process.pid, 1);
const api = spawnChild('fake-api.mjs', [API_LATENCY_MS]);
const { port: apiPort } = await api.ready;
const preload = ['--expose-gc', '--import', new URL('promotion-trace.mjs', import.meta.url).pathname];
const exporter = spawnChild('polls.mjs', [`http://127.0.0.1:${apiPort}`, units, concurrency, roundPeriod(units, concurrency, API_LATENCY_MS)], { nodeOptions: [...flags, ...preload] });
try {
  const { port } = await exporter.ready;
  if (PIN) pin(exporter.pid, 0);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  console.log(`${units} units at concurrency ${concurrency}, node ${[...flags, '--expose-gc'].join(' ')}${PIN ? ', exporter pinned to CPU 0' : ''}`);
  console.log('round      promoted MB   allocated in old generation MB   scavenges   mark-compacts   sampled survivors MB');
  let last;
  for (let n = 0; n <= rounds; n++) {
    const sample = n === rounds;
    let landing = true;
    const scraping = (async () => {
      while (landing) {
        await scrape(agent, port, true);
        await sleep(250);
      }
    })();
    await exporter.call('promotion-start', { sample });
    await exporter.call(n === 0 ? 'first' : 'steady');
    last = await exporter.call('promotion-stop');
    landing = false;
    await scraping;
    const sampled = last.sites.reduce((sum, s) => sum + s.bytes, 0);
    const name = sample ? 'sampled' : n === 0 ? 'first' : `steady ${n}`;
    console.log(
      `${name.padEnd(9)}  ${(last.promoted / MB).toFixed(2).padStart(11)}   ${(last.direct / MB).toFixed(2).padStart(30)}   ` +
        `${String(last.scavenges).padStart(9)}   ${String(last.markCompacts).padStart(13)}   ${(sample ? (sampled / MB).toFixed(2) : '-').padStart(20)}`,
    );
  }
  agent.destroy();
  const sampled = last.sites.reduce((sum, s) => sum + s.bytes, 0);
  console.log(`\nwhat outlived minor GCs in the sampled round, by allocation site (sampled every ${last.samplingBytes} bytes on average; ← the exporter's frame nearest to it):`);
  for (const { site, bytes } of last.sites.slice(0, top)) console.log(`  ${((100 * bytes) / sampled).toFixed(1).padStart(5)} %  ${(bytes / MB).toFixed(3).padStart(7)} MB  ${site}`);
} finally {
  await exporter.exit();
  await api.exit();
}
