// `node bench/rounds.mjs [--units=10000] [--concurrency=16] [--rounds=6] [--flags="…"]`
// How often a steady poll round has a mark-compact in it, and what the rounds with one and
// without one see. run.mjs measures the first round and one steady round; a mark-compact comes
// every round or two, so one round says little about its rate. This runs polls.mjs as run.mjs
// does (pinned beside an idle process, scraped with gzip every 250 ms) for the first round and
// --rounds steady ones, and prints for each its event-loop delay max and p99, the mark-compacts
// that ended in it, and the idle process's longest gap over the same seconds; then peak RSS.
import { Agent } from 'node:http';
import { parseArgs } from 'node:util';
import { canPin, imageNodeFlags, pin, roundPeriod, scrape, sleep, startPollRig } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    units: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '6' },
    flags: { type: 'string' },
  },
});
const units = Number(args.units);
const concurrency = Number(args.concurrency);
const rounds = Number(args.rounds);
if (!(rounds > 0)) throw new Error('--rounds must be positive');
const API_LATENCY_MS = 20;
const flags = args.flags === undefined ? imageNodeFlags() : args.flags.split(' ').filter(Boolean);
const monotonic = () => Number(process.hrtime.bigint()) / 1e6;

const PIN = canPin();
if (PIN) pin(process.pid, 1);
const { exporter, idle, port, exit } = await startPollRig({
  units,
  concurrency,
  latencyMs: API_LATENCY_MS,
  period: roundPeriod(units, concurrency, API_LATENCY_MS),
  nodeOptions: flags,
  pinTo: PIN ? (pid) => pin(pid, 0) : undefined,
});
try {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  console.log(`${units} units at concurrency ${concurrency}, node ${flags.join(' ')}${PIN ? ', exporter pinned to CPU 0' : ''}`);
  console.log('round      seconds   eld max ms   eld p99 ms   mark-compacts   idle process max ms');
  for (let i = 0; i <= rounds; i++) {
    let landing = true;
    const scraping = (async () => {
      while (landing) {
        await scrape(agent, port, true);
        await sleep(250);
      }
    })();
    const round = await exporter.call(i === 0 ? 'first' : 'steady');
    const end = monotonic();
    landing = false;
    await scraping;
    const floor = await idle.call('window', { from: end - round.elapsedMs, to: end });
    const name = i === 0 ? 'first' : `steady ${i}`;
    console.log(
      `${name.padEnd(10)} ${(round.elapsedMs / 1000).toFixed(1).padStart(7)} ${round.landingEldMaxMs.toFixed(1).padStart(12)} ` +
        `${round.landingEldP99Ms.toFixed(1).padStart(12)} ${String(round.markCompacts).padStart(15)} ${floor.maxMs.toFixed(1).padStart(21)}`,
    );
  }
  agent.destroy();
  const memory = await exporter.call('memory');
  console.log(`peak RSS ${(memory.peakRss / 2 ** 20).toFixed(0)} MiB, ${memory.majorGcs} mark-compacts in all`);
} finally {
  await exit();
}
