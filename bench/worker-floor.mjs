// `node bench/worker-floor.mjs [--worker=alloc|compute|duty] [--seconds=10] [--runs=1]`
// The event-loop delay an idle main thread sees beside a worker thread of the same process,
// both pinned to one CPU (as the exporter is in the benchmark, and in a container limited to
// one): the floor that polling in a worker thread could reach for the thread serving /metrics.
// The worker allocates and collects without pause (alloc), computes without allocating
// (compute), or computes for 20 ms in every 100 (duty). Run with the image's node flags.
import { execFileSync } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { canPin, imageNodeFlags } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    worker: { type: 'string', default: 'alloc' },
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '1' },
    child: { type: 'boolean', default: false },
  },
});
if (!['alloc', 'compute', 'duty'].includes(args.worker)) throw new Error('--worker must be alloc, compute or duty');

if (!args.child) {
  // Each run in a fresh process with the image's flags, pinned to CPU 0 when it can be.
  const pin = canPin() ? ['taskset', '-c', '0'] : [];
  for (let run = 0; run < Number(args.runs); run++) {
    const argv = [process.execPath, ...imageNodeFlags(), new URL(import.meta.url).pathname, '--child', `--worker=${args.worker}`, `--seconds=${args.seconds}`];
    const [cmd, ...rest] = [...pin, ...argv];
    process.stdout.write(execFileSync(cmd, rest, { encoding: 'utf8' }));
  }
} else {
  const worker = new Worker(
    `const mode = ${JSON.stringify(args.worker)};
    let kept = [];
    function busy() {
      const end = performance.now() + 20;
      while (performance.now() < end) {
        // Objects that live a while, as a poll's do, so some are promoted and mark-compacts run.
        if (mode === 'alloc') { kept.push({ a: [1, 2, 3], s: 'x'.repeat(50) + Math.random() }); if (kept.length > 200000) kept = []; }
      }
      if (mode === 'duty') setTimeout(busy, 80); else setImmediate(busy);
    }
    busy();`,
    { eval: true },
  );
  // A second for the worker to get going, then the main thread's own delay.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  await new Promise((resolve) => setTimeout(resolve, Number(args.seconds) * 1000));
  eld.disable();
  console.log(`worker ${args.worker}: main thread's event-loop delay max ${(eld.max / 1e6).toFixed(1)} ms, p99 ${(eld.percentile(99) / 1e6).toFixed(1)} ms`);
  await worker.terminate();
}
