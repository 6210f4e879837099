// `node bench/gaps.mjs [--units=10000] [--concurrency=16] [--flags="…"] [--perf] [--min-ms=8]`
// Where the event-loop delay maxima of the poll benchmark come from. It runs the exporter as
// run.mjs's poll rounds do (polls.mjs against the fake API, pinned, scraped every 250 ms), with
// gap-trace.mjs preloaded, and lists every gap of its steady round longer than --min-ms: its
// length and the GC pauses perf_hooks reports inside it. With --perf (needs `perf`, Debian's
// linux-perf, and root or perf_event_paranoid ≤ 1), the exporter's main thread is sampled at
// 4 kHz during the round, and each gap also shows what that thread was doing: the libuv phase,
// and the V8 GC function or JS function on its stack. perf_hooks does not report every GC
// pause: finishing a mark-compact's sweeping when the next one starts is not an entry.
// JS names come from /tmp/perf-<pid>.map, to which V8 only appends: code that moved or was
// collected can leave a stale name on an address (a config function at poll time, say).
// An idle process (idle.mjs) runs beside the exporter on its CPU; each gap shows the longest
// gap of the idle process's own event loop that overlapped it: when a process doing nothing
// was held up as long, the gap was the machine's (the VM, another thread), not the exporter's.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { canPin, imageNodeFlags, pin, roundPeriod, scrape, sleep, spawnChild } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    units: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    flags: { type: 'string' },
    perf: { type: 'boolean', default: false },
    'min-ms': { type: 'string', default: '8' },
  },
});
const units = Number(args.units);
const concurrency = Number(args.concurrency);
const minMs = Number(args['min-ms']);
const API_LATENCY_MS = 20;
const flags = args.flags === undefined ? imageNodeFlags() : args.flags.split(' ').filter(Boolean);
const monotonic = () => Number(process.hrtime.bigint()) / 1e9;

const PIN = canPin();
if (PIN) pin(process.pid, 1);
const dir = mkdtempSync(join(tmpdir(), 'flashback-gaps-'));
const api = spawnChild('fake-api.mjs', [API_LATENCY_MS]);
const { port: apiPort } = await api.ready;
// --perf-basic-prof writes the JIT's symbols to /tmp/perf-<pid>.map, where perf looks for them,
// and turns on V8's log, kept out of the working directory.
const preload = ['--import', new URL('gap-trace.mjs', import.meta.url).pathname, ...(args.perf ? ['--perf-basic-prof', `--logfile=${join(dir, 'v8.log')}`] : [])];
const exporter = spawnChild('polls.mjs', [`http://127.0.0.1:${apiPort}`, units, concurrency, roundPeriod(units, concurrency, API_LATENCY_MS)], { nodeOptions: [...flags, ...preload] });
const idle = spawnChild('idle.mjs', [], { nodeOptions: flags });
try {
  const { port } = await exporter.ready;
  await idle.ready;
  if (PIN) pin(exporter.pid, 0);
  if (PIN) pin(idle.pid, 0);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  /** One round, scraped every 250 ms as run.mjs does, with its gaps. */
  const measure = async (cmd, perfFile) => {
    let landing = true;
    const scraping = (async () => {
      while (landing) {
        await scrape(agent, port, true);
        await sleep(250);
      }
    })();
    const perf = perfFile && spawn('perf', ['record', '-F', '4000', '-g', '-k', 'CLOCK_MONOTONIC', '-t', String(exporter.pid), '-o', perfFile], { stdio: 'ignore' });
    const round = await exporter.call(cmd);
    const end = monotonic();
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((resolve) => perf.once('exit', resolve));
    }
    landing = false;
    await scraping;
    const { gaps } = await exporter.call('gaps');
    const start = end - round.elapsedMs / 1000;
    const floor = await idle.call('window', { from: start * 1000, to: end * 1000 });
    /** The idle process's longest gap overlapping [from, to] (seconds), or 0. */
    const beside = (from, to) => Math.max(0, ...floor.gaps.filter((g) => g.to > from * 1000 && g.from < to * 1000).map((g) => g.to - g.from));
    const inRound = gaps.filter((gap) => gap.start >= start && gap.end <= end).map((gap) => ({ ...gap, idleMs: beside(gap.start, gap.end) }));
    return { round, start, idleMaxMs: floor.maxMs, gaps: inRound };
  };
  const first = await measure('first');
  const steady = await measure('steady', args.perf ? join(dir, 'perf.data') : undefined);
  agent.destroy();

  console.log(`${units} units at concurrency ${concurrency}, node ${flags.join(' ')}${PIN ? ', exporter pinned to CPU 0' : ''}`);
  for (const [name, { round, gaps, idleMaxMs }] of [['first', first], ['steady', steady]]) {
    const over = (ms) => gaps.filter((gap) => gap.ms > ms).length;
    // Held up by the machine: the idle process stalled for at least half as long at the time.
    const machine = gaps.filter((gap) => gap.ms > 10 && gap.idleMs >= gap.ms / 2).length;
    console.log(
      `${name} round: ${(round.elapsedMs / 1000).toFixed(1)} s, event-loop delay max ${round.landingEldMaxMs.toFixed(1)} ms, p99 ${round.landingEldP99Ms.toFixed(1)} ms; ` +
        `gaps over 8 ms: ${over(8)}, over 10 ms: ${over(10)}, over 15 ms: ${over(15)}; ` +
        `idle process beside it: max ${idleMaxMs.toFixed(1)} ms, held up at least half as long in ${machine} of the gaps over 10 ms`,
    );
  }
  const samples = args.perf ? perfSamples(join(dir, 'perf.data')) : [];
  console.log(`\nsteady round, gaps over ${minMs} ms (seconds into the round, length, GC pauses perf_hooks reported inside):`);
  for (const gap of steady.gaps.filter((g) => g.ms > minMs)) {
    const gc = gap.gc.map((g) => `${g.kind} ${g.ms.toFixed(1)} ms`).join(', ') || 'none';
    console.log(`  ${(gap.start - steady.start).toFixed(3)} s  ${gap.ms.toFixed(1)} ms  idle process: ${gap.idleMs.toFixed(1)} ms  GC: ${gc}`);
    if (!args.perf) continue;
    const inside = samples.filter((s) => s.time >= gap.start && s.time <= gap.end);
    const counts = new Map();
    for (const s of inside) counts.set(s.what, (counts.get(s.what) ?? 0) + 1);
    console.log(`      main thread on CPU ${(inside.length / 4).toFixed(1)} ms of it:`);
    for (const [what, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 4)) console.log(`      ${(n / 4).toFixed(2).padStart(6)} ms  ${what}`);
  }
} finally {
  await exporter.exit();
  await idle.exit();
  await api.exit();
  rmSync(dir, { recursive: true, force: true });
  if (args.perf) rmSync(`/tmp/perf-${exporter.pid}.map`, { force: true });
}

/**
 * perf's samples of the main thread: each one's time and what it was doing, as the libuv phase
 * and the innermost V8 GC function on its stack, else the innermost JS function.
 */
function perfSamples(file) {
  const text = execFileSync('perf', ['script', '-i', file, '-F', 'tid,time,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  const samples = [];
  for (const block of text.split(/\n(?=\s*\d+\s+[\d.]+:)/)) {
    const [head, ...frames] = block.split('\n');
    const time = /([\d.]+):/.exec(head ?? '')?.[1];
    if (time === undefined) continue;
    const symbols = frames.map((f) => f.trim().replace(/^[0-9a-f]+\s+/, '').replace(/\(.*$/, ''));
    const phase = symbols.find((s) => /^uv__(run_timers|io_poll|run_check|run_idle|run_pending|run_closing)/.test(s))?.slice(4) ?? 'outside the loop';
    const gc = symbols.find((s) => /v8::internal::(Heap::|Scavenger|MarkCompact|Sweeper|IncrementalMarking|MinorMarkSweep)/.test(s));
    const js = symbols.find((s) => s.startsWith('JS:'));
    samples.push({ time: Number(time), what: `${phase}: ${gc ?? js?.replace(/^JS:\W*/, '') ?? symbols[0] ?? '?'}` });
  }
  return samples;
}
