import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { createHistogram, PerformanceObserver, type RecordableHistogram } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import { escapeLabelValue, familyHeader } from '../store/exposition.js';

// The process_* and nodejs_* metrics of prom-client's collectDefaultMetrics, with the same
// names, types, labels and help texts, so dashboards made for Node.js services work as they
// are. They are rendered here because they are rendered on every scrape: prom-client's
// collectors cost about 150 µs a scrape (three heap-space walks, a histogram walk of some
// 100,000 buckets for the lag's standard deviation, label hashing, a promise per metric,
// /proc files opened anew), a tenth of a whole gzip scrape at 100k series. This costs about
// 45 µs, more than half of it the kernel listing /proc/self/fd.
//
// Left out: nodejs_active_handles and nodejs_active_requests (they walk every handle through
// process._getActiveHandles(); nodejs_active_resources says the same through the public
// API), the three `_total`-suffixed gauges promtool rejects, and nodejs_eventloop_lag_seconds
// (it waits a turn of the event loop on every scrape; the lag summary below covers it).

const GC_KINDS: Readonly<Record<number, string>> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5];
const LAG_STATS = [
  ['min', 'The minimum recorded event loop delay.'],
  ['max', 'The maximum recorded event loop delay.'],
  ['mean', 'The mean of the recorded event loop delays.'],
  ['stddev', 'The standard deviation of the recorded event loop delays.'],
  ['p50', 'The 50th percentile of the recorded event loop delays.'],
  ['p90', 'The 90th percentile of the recorded event loop delays.'],
  ['p99', 'The 99th percentile of the recorded event loop delays.'],
] as const;

type FamilyType = 'gauge' | 'counter' | 'histogram';

/**
 * Family headers and label values, each made once: escaping help texts on every scrape was
 * a third of the cost. One per RuntimeMetrics, so nothing is shared between instances.
 */
class Text {
  readonly #headers = new Map<string, string>();
  readonly #spaces = new Map<string, string>();

  header(name: string, help: string, type: FamilyType): string {
    let text = this.#headers.get(name);
    if (text === undefined) this.#headers.set(name, (text = familyHeader(name, help, type)));
    return text;
  }

  gauge(name: string, help: string, value: number): string {
    return `${this.header(name, help, 'gauge')}${name} ${value}\n`;
  }

  counter(name: string, help: string, value: number): string {
    return `${this.header(name, help, 'counter')}${name} ${value}\n`;
  }

  /** `old_space` → `old`, as prom-client labels heap spaces. */
  space(name: string): string {
    let label = this.#spaces.get(name);
    if (label === undefined) this.#spaces.set(name, (label = escapeLabelValue(name.replace(/_space$/, ''))));
    return label;
  }
}

/**
 * Event-loop delay as prom-client's monitor reports it: the interval between the turns of a
 * 10 ms timer, summarised since the last render. monitorEventLoopDelay keeps a histogram
 * precise to three figures, whose standard deviation walks all of its buckets (270 µs, on
 * every scrape); this keeps one precise to two figures for the percentiles, and the moments
 * for the mean and deviation.
 */
class LagMonitor {
  static readonly RESOLUTION_MS = 10;
  readonly #histogram: RecordableHistogram = createHistogram({ lowest: 1, highest: 3.6e12, figures: 2 });
  readonly #timer: NodeJS.Timeout;
  #last = performance.now();
  #count = 0;
  #sum = 0;
  #sumOfSquares = 0;

  constructor() {
    this.#timer = setInterval(() => {
      const now = performance.now();
      const ns = Math.max(1, Math.round((now - this.#last) * 1e6));
      this.#last = now;
      this.#histogram.record(ns);
      this.#count++;
      this.#sum += ns;
      this.#sumOfSquares += ns * ns;
    }, LagMonitor.RESOLUTION_MS).unref();
  }

  /** min, max, mean, stddev, p50, p90 and p99 in seconds (0 before the first sample), then starts over. */
  take(): Record<(typeof LAG_STATS)[number][0], number> {
    const h = this.#histogram;
    const n = this.#count;
    const mean = n === 0 ? 0 : this.#sum / n;
    const variance = n === 0 ? 0 : Math.max(0, this.#sumOfSquares / n - mean * mean);
    const stats = {
      min: n === 0 ? 0 : h.min / 1e9,
      max: n === 0 ? 0 : h.max / 1e9,
      mean: mean / 1e9,
      stddev: Math.sqrt(variance) / 1e9,
      p50: n === 0 ? 0 : h.percentile(50) / 1e9,
      p90: n === 0 ? 0 : h.percentile(90) / 1e9,
      p99: n === 0 ? 0 : h.percentile(99) / 1e9,
    };
    h.reset();
    this.#count = this.#sum = this.#sumOfSquares = 0;
    return stats;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** Counts of garbage collections by kind, bucketed by duration as prom-client does. */
class GcHistogram {
  readonly #kinds = new Map<string, { buckets: number[]; sum: number; count: number }>();

  observe(kind: string, seconds: number): void {
    let h = this.#kinds.get(kind);
    if (h === undefined) this.#kinds.set(kind, (h = { buckets: GC_BUCKETS.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < GC_BUCKETS.length; i++) if (seconds <= GC_BUCKETS[i]!) h.buckets[i]!++;
    h.sum += seconds;
    h.count++;
  }

  render(t: Text): string {
    const name = 'nodejs_gc_duration_seconds';
    let text = t.header(name, 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.', 'histogram');
    for (const [kind, h] of this.#kinds) {
      for (let i = 0; i < GC_BUCKETS.length; i++) text += `${name}_bucket{le="${GC_BUCKETS[i]}",kind="${kind}"} ${h.buckets[i]}\n`;
      text += `${name}_bucket{le="+Inf",kind="${kind}"} ${h.count}\n${name}_sum{kind="${kind}"} ${h.sum}\n${name}_count{kind="${kind}"} ${h.count}\n`;
    }
    return text;
  }
}

/** Reads a small /proc file through one descriptor kept open: a pread instead of open, read, close. */
class ProcFile {
  #fd: number | undefined;
  readonly #buffer = Buffer.allocUnsafe(4096);

  constructor(path: string) {
    try {
      this.#fd = openSync(path, 'r');
    } catch {
      this.#fd = undefined; // not Linux, or no /proc: the metrics that need it are left out
    }
  }

  read(): string | undefined {
    if (this.#fd === undefined) return undefined;
    const n = readSync(this.#fd, this.#buffer, 0, this.#buffer.length, 0);
    return this.#buffer.toString('latin1', 0, n);
  }

  /**
   * Closes the descriptor and forgets its number: the kernel hands the number to the next
   * open file or socket, and a scrape still running at shutdown must not read that instead.
   */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** A `Vm…:  123 kB` line of /proc/self/status, in bytes. */
function statusBytes(status: string, key: string): number | undefined {
  const at = status.indexOf(`\n${key}:`);
  if (at === -1) return undefined;
  const kb = Number.parseInt(status.slice(at + key.length + 2), 10);
  return Number.isFinite(kb) ? kb * 1024 : undefined;
}

function maxOpenFiles(): number | undefined {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The process and Node.js runtime metrics, rendered as exposition text on each call from
 * values read at that moment (the event-loop lag summary covers the time since the last
 * render, as prom-client's does). Call `close` to stop its monitors.
 */
export class RuntimeMetrics {
  readonly #status = new ProcFile('/proc/self/status');
  readonly #lag = new LagMonitor();
  readonly #text = new Text();
  readonly #gc = new GcHistogram();
  readonly #gcObserver: PerformanceObserver;
  readonly #startTime: string;
  readonly #version: string;
  readonly #maxFds = maxOpenFiles();

  constructor() {
    this.#gcObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? 0];
        if (kind !== undefined) this.#gc.observe(kind, entry.duration / 1000);
      }
    });
    this.#gcObserver.observe({ entryTypes: ['gc'] });
    const [major, minor, patch] = process.versions.node.split('.');
    this.#startTime = this.#text.gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', Math.round(performance.timeOrigin / 1000));
    this.#version = `${familyHeader('nodejs_version_info', 'Node.js version info.', 'gauge')}nodejs_version_info{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}"} 1\n`;
  }

  render(): string {
    const t = this.#text;
    const cpu = process.cpuUsage();
    const user = cpu.user / 1e6;
    const system = cpu.system / 1e6;
    let text =
      t.counter('process_cpu_user_seconds_total', 'Total user CPU time spent in seconds.', user) +
      t.counter('process_cpu_system_seconds_total', 'Total system CPU time spent in seconds.', system) +
      t.counter('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', user + system) +
      this.#startTime;
    const status = this.#status.read();
    // /proc/self/status has the resident size too: reading it there saves the second /proc
    // read that process.memoryUsage.rss() makes.
    const rss = (status !== undefined ? statusBytes(status, 'VmRSS') : undefined) ?? process.memoryUsage.rss();
    text += t.gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', rss);
    if (status !== undefined) {
      const virtual = statusBytes(status, 'VmSize');
      const data = statusBytes(status, 'VmData');
      if (virtual !== undefined) text += t.gauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.', virtual);
      if (data !== undefined) text += t.gauge('process_heap_bytes', 'Process heap size in bytes.', data);
      // The directory's own descriptor, open while it is listed, is not counted.
      text += t.gauge('process_open_fds', 'Number of open file descriptors.', readdirSync('/proc/self/fd').length - 1);
    }
    if (this.#maxFds !== undefined) text += t.gauge('process_max_fds', 'Maximum number of open file descriptors.', this.#maxFds);

    const lag = this.#lag.take();
    for (const [stat, help] of LAG_STATS) text += t.gauge(`nodejs_eventloop_lag_${stat}_seconds`, help, lag[stat]);

    const resources = new Map<string, number>();
    for (const type of process.getActiveResourcesInfo()) resources.set(type, (resources.get(type) ?? 0) + 1);
    text += t.header('nodejs_active_resources', 'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.', 'gauge');
    for (const [type, count] of resources) text += `nodejs_active_resources{type="${escapeLabelValue(type)}"} ${count}\n`;

    const heap = getHeapStatistics();
    text +=
      t.gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', heap.total_heap_size) +
      t.gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', heap.used_heap_size) +
      t.gauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', heap.external_memory);
    const spaces = getHeapSpaceStatistics();
    let total = t.header('nodejs_heap_space_size_total_bytes', 'Process heap space size total from Node.js in bytes.', 'gauge');
    let used = t.header('nodejs_heap_space_size_used_bytes', 'Process heap space size used from Node.js in bytes.', 'gauge');
    let available = t.header('nodejs_heap_space_size_available_bytes', 'Process heap space size available from Node.js in bytes.', 'gauge');
    for (const space of spaces) {
      const label = `{space="${t.space(space.space_name)}"}`;
      total += `nodejs_heap_space_size_total_bytes${label} ${space.space_size}\n`;
      used += `nodejs_heap_space_size_used_bytes${label} ${space.space_used_size}\n`;
      available += `nodejs_heap_space_size_available_bytes${label} ${space.space_available_size}\n`;
    }
    // In prom-client's order, so the two render the same families in the same sequence.
    return text + total + used + available + this.#version + this.#gc.render(t);
  }

  /** Stops the event-loop monitor and the GC observer, and closes /proc/self/status. */
  close(): void {
    this.#lag.stop();
    this.#gcObserver.disconnect();
    this.#status.close();
  }
}
