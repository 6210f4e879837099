// `node bench/gaps.mjs [--units=10000] [--concurrency=16] [--flags="…"] [--perf] [--min-ms=8]`
// Where the event-loop delay maxima of the poll benchmark come from. It runs the exporter as
// run.mjs's poll rounds do (polls.mjs against the fake API, pinned, scraped every 250 ms), with
// gap-trace.mjs preloaded, and lists every gap of its steady round longer than --min-ms: its
// length and the GC pauses perf_hooks reports inside it. perf_hooks does not report every GC
// pause: finishing a mark-compact's sweeping when the next one starts is not an entry.
// An idle process (idle.mjs) runs beside the exporter on its CPU; each gap shows the longest
// gap of the idle process's own event loop that overlapped it: when a process doing nothing
// was held up as long, the gap was the machine's (the VM, another thread), not the exporter's.
//
// With --perf (needs `perf`, Debian's linux-perf, and root or perf_event_paranoid ≤ 0), the
// exporter's CPU is sampled at 4 kHz during the steady round, every thread on it, and each gap
// shows who had the CPU: the exporter's main thread, its other threads (V8's compiler threads,
// "V8Worker"; libuv's pool, which runs zlib), other processes (the idle process, the kernel's
// own threads), or nobody, when the VM did not run the CPU at all; then what the main thread was
// doing, as the libuv phase and the V8 GC function or JS function on its stack. The round's
// line counts the gaps over 10 ms each of these mostly took. JS names come from
// /tmp/perf-<pid>.map, to which V8 only appends: code that moved or was collected can leave a
// stale name on an address (a config function at poll time, say). Unpinned (one CPU), only
// the main thread is sampled.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { canPin, imageNodeFlags, pin, roundPeriod, scrape, sleep, startPollRig } from './harness.mjs';

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
const PERF_HZ = 4000;
/** Milliseconds of CPU that `n` of perf's samples stand for. */
const ms = (n) => (n * 1000) / PERF_HZ;
const flags = args.flags === undefined ? imageNodeFlags() : args.flags.split(' ').filter(Boolean);
const monotonic = () => Number(process.hrtime.bigint()) / 1e9;

const PIN = canPin();
if (PIN) pin(process.pid, 1);
const dir = mkdtempSync(join(tmpdir(), 'flashback-gaps-'));
// --perf-basic-prof writes the JIT's symbols to /tmp/perf-<pid>.map, where perf looks for them,
// and turns on V8's log, kept out of the working directory.
const preload = ['--import', new URL('gap-trace.mjs', import.meta.url).pathname, ...(args.perf ? ['--perf-basic-prof', `--logfile=${join(dir, 'v8.log')}`] : [])];
const { exporter, idle, port, exit } = await startPollRig({
  units,
  concurrency,
  latencyMs: API_LATENCY_MS,
  period: roundPeriod(units, concurrency, API_LATENCY_MS),
  nodeOptions: [...flags, ...preload],
  idleOptions: flags,
  pinTo: PIN ? (pid) => pin(pid, 0) : undefined,
});
try {
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
    // Pinned, the exporter has CPU 0 to itself but for the idle process: sample all of it.
    const who = PIN ? ['-a', '-C', '0'] : ['-t', String(exporter.pid)];
    // A sample every 250 µs of CPU time (cpu-clock), so samples count time: a VM's cycle counter
    // at a set frequency does not.
    const perf = perfFile && spawn('perf', ['record', '-e', 'cpu-clock', '-c', String(1e9 / PERF_HZ), '-g', '-k', 'CLOCK_MONOTONIC', ...who, '-o', perfFile], { stdio: 'ignore' });
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

  const samples = args.perf ? perfSamples(join(dir, 'perf.data'), exporter.pid) : [];
  for (const gap of steady.gaps) gap.cpu = args.perf && PIN ? whoRan(gap, samples) : undefined;

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
  if (args.perf && PIN) {
    const during = samples.filter((s) => s.time >= steady.start && s.time <= steady.start + steady.round.elapsedMs / 1000 && s.comm !== 'swapper');
    console.log(`steady round, CPU 0 (perf): ${shares(during)}, of ${(steady.round.elapsedMs / 1000).toFixed(2)} s`);
    const long = steady.gaps.filter((gap) => gap.ms > 10);
    const count = (side) => long.filter((gap) => gap.cpu.mostly === side).length;
    console.log(
      `steady round, who had CPU 0 for most of each gap over 10 ms: the main thread ${count('main')}, ` +
        `the exporter's other threads ${count('threads')}, other processes or nobody (the machine) ${count('machine')}`,
    );
  }
  console.log(`\nsteady round, gaps over ${minMs} ms (seconds into the round, length, GC pauses perf_hooks reported inside):`);
  for (const gap of steady.gaps.filter((g) => g.ms > minMs)) {
    const gc = gap.gc.map((g) => `${g.kind} ${g.ms.toFixed(1)} ms`).join(', ') || 'none';
    console.log(`  ${(gap.start - steady.start).toFixed(3)} s  ${gap.ms.toFixed(1)} ms  idle process: ${gap.idleMs.toFixed(1)} ms  GC: ${gc}`);
    if (!args.perf) continue;
    if (gap.cpu) console.log(`      CPU 0: ${gap.cpu.text}`);
    const inside = samples.filter((s) => s.main && s.time >= gap.start && s.time <= gap.end);
    const counts = new Map();
    for (const s of inside) counts.set(s.what, (counts.get(s.what) ?? 0) + 1);
    console.log(`      main thread on CPU ${ms(inside.length).toFixed(1)} ms of it:`);
    for (const [what, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 4)) console.log(`      ${ms(n).toFixed(2).padStart(6)} ms  ${what}`);
  }
} finally {
  await exit();
  rmSync(dir, { recursive: true, force: true });
  if (args.perf) rmSync(`/tmp/perf-${exporter.pid}.map`, { force: true });
}

/**
 * perf's samples: each one's time, thread and process, whether it is the exporter's main thread,
 * and what that thread was doing, as the libuv phase and the innermost V8 GC function on its
 * stack, else the innermost JS function.
 */
function perfSamples(file, mainPid) {
  const text = execFileSync('perf', ['script', '-i', file, '-F', 'comm,pid,tid,time,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  const samples = [];
  // A sample is a header line (comm pid/tid time:) and its stack, one frame a line, then a blank line.
  for (const block of text.split(/\n\s*\n/)) {
    const [head, ...frames] = block.split('\n');
    const m = /^\s*(.*?)\s+(\d+)\/(\d+)\s+([\d.]+):/.exec(head ?? '');
    if (m === null) continue;
    const [, comm, pid, tid, time] = m;
    const symbols = frames.map((f) => f.trim().replace(/^[0-9a-f]+\s+/, '').replace(/\(.*$/, ''));
    const phase = symbols.find((s) => /^uv__(run_timers|io_poll|run_check|run_idle|run_pending|run_closing)/.test(s))?.slice(4) ?? 'outside the loop';
    const gc = symbols.find((s) => /v8::internal::(Heap::|Scavenger|MarkCompact|Sweeper|IncrementalMarking|MinorMarkSweep)/.test(s));
    const js = symbols.find((s) => s.startsWith('JS:'));
    samples.push({
      time: Number(time),
      comm,
      exporter: Number(pid) === mainPid,
      main: Number(tid) === mainPid,
      what: `${phase}: ${gc ?? js?.replace(/^JS:\W*/, '') ?? symbols[0] ?? '?'}`,
    });
  }
  return samples;
}

/**
 * Who had the CPU during a gap, from samples of every thread on it: the main thread, the
 * exporter's other threads, other processes, and nobody (no sample: the CPU was idle, or the VM
 * was not running it). `mostly` names the main thread when it ran half the gap or more, else
 * whichever of the other two, the exporter's threads or the machine, took more of it.
 */
function whoRan(gap, samples) {
  const inside = samples.filter((s) => s.time >= gap.start && s.time <= gap.end && s.comm !== 'swapper');
  const main = ms(inside.filter((s) => s.main).length);
  const threads = ms(inside.filter((s) => s.exporter && !s.main).length);
  const nobody = Math.max(0, gap.ms - ms(inside.length));
  const machine = ms(inside.filter((s) => !s.exporter).length) + nobody;
  const mostly = main >= gap.ms / 2 ? 'main' : threads > machine ? 'threads' : 'machine';
  return { mostly, text: `${shares(inside, 1, 'ms')}, nobody ${nobody.toFixed(1)} ms` };
}

/** The CPU time of some samples, split into the main thread, the exporter's other threads and other processes, each by name. */
function shares(list, digits = 2, unit = 's') {
  const scale = unit === 's' ? 1 / 1000 : 1;
  const time = (n) => `${(ms(n) * scale).toFixed(digits)} ${unit}`;
  const byName = (part) => {
    const names = new Map();
    for (const s of part) names.set(s.comm, (names.get(s.comm) ?? 0) + 1);
    const named = [...names].sort((a, b) => b[1] - a[1]).slice(0, 3);
    const rest = part.length - named.reduce((sum, [, n]) => sum + n, 0);
    const text = [...named, ...(rest > 0 ? [['others', rest]] : [])].map(([name, n]) => `${name} ${(ms(n) * scale).toFixed(digits)}`).join(', ');
    return part.length === 0 ? '' : ` (${text})`;
  };
  const threads = list.filter((s) => s.exporter && !s.main);
  const others = list.filter((s) => !s.exporter);
  return `main thread ${time(list.filter((s) => s.main).length)}, its other threads ${time(threads.length)}${byName(threads)}, other processes ${time(others.length)}${byName(others)}`;
}
