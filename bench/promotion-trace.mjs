// Preloaded (`node --expose-gc --import`) into a benchmark child by promotion.mjs: measures what
// the child puts into V8's old generation between two messages on its IPC channel. A mark-compact
// starts when the old generation has grown to near its limit, so what a round adds there is
// what brings the next one closer; it comes in two ways, both measured here:
// - promoted by scavenges: young objects that outlived two of them (or one, when their page is
//   moved whole), measured as each scavenge's growth of the old spaces (v8.GCProfiler);
// - allocated there directly: compiled code and bytecode, objects too large for the young
//   generation: the growth of the old spaces between two GCs.
// With `sample: true`, what outlives minor GCs is also sampled by allocation site (the heap
// profiler's sampling, with objects collected by minor GCs left out). Young objects that died but
// were not collected yet would pass for survivors when sampling stops, so a minor GC is forced
// first (hence --expose-gc). Sampling walks the stack at every sample and slows allocation, so
// promotion.mjs samples a round of its own and measures the others without it.
// Answers `{ cmd: 'promotion-start', sample }` and `{ cmd: 'promotion-stop' }`; the child's own
// script ignores both.
import { Session } from 'node:inspector/promises';
import { GCProfiler } from 'node:v8';

// The old generation, as V8's heap statistics name its spaces.
const OLD = new Set(['old_space', 'code_space', 'trusted_space', 'large_object_space', 'code_large_object_space', 'trusted_large_object_space']);
const SAMPLING_BYTES = 1024;
const session = new Session();
session.connect();
let gcs;
let sampling = false;

process.on('message', async (msg) => {
  if (msg?.cmd === 'promotion-start') {
    await session.post('HeapProfiler.enable');
    if (!process.env.NOSAMPLE) await session.post('HeapProfiler.startSampling', { samplingInterval: SAMPLING_BYTES, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
    gcs = new GCProfiler();
    gcs.start();
    process.send({ id: msg.id });
  } else if (msg?.cmd === 'promotion-stop') {
    globalThis.gc({ type: 'minor' });
    const { profile } = process.env.NOSAMPLE ? { profile: { head: { callFrame: { url: '' }, selfSize: 0, children: [] } } } : await session.post('HeapProfiler.stopSampling');
    const { statistics } = gcs.stop();
    process.send({ id: msg.id, ...oldGeneration(statistics), samplingBytes: SAMPLING_BYTES, sites: sites(profile) });
  }
});

/** Bytes promoted by scavenges and allocated directly in the old generation, and the GCs counted. */
function oldGeneration(statistics) {
  const old = (heap) => heap.heapSpaceStatistics.filter((s) => OLD.has(s.spaceName)).reduce((sum, s) => sum + s.spaceUsedSize, 0);
  let promoted = 0;
  let direct = 0;
  let scavenges = 0;
  let markCompacts = 0;
  let last;
  // The last entry is the minor GC forced before stopping: its promotion is not the round's.
  for (const gc of statistics.slice(0, -1)) {
    if (last !== undefined) direct += Math.max(0, old(gc.beforeGC) - last);
    if (gc.gcType === 'Scavenge' || gc.gcType === 'MinorMarkSweep') {
      scavenges++;
      promoted += Math.max(0, old(gc.afterGC) - old(gc.beforeGC));
    } else if (gc.gcType === 'MarkSweepCompact') {
      markCompacts++;
    }
    last = old(gc.afterGC);
  }
  return { promoted, direct, scavenges, markCompacts };
}

/**
 * Sampled bytes by allocation site: the innermost frame (with, for a builtin, the nearest frame
 * that has a script), and the nearest frame of the exporter's own code (dist/) above it, which
 * is where a change would be made.
 */
function sites(profile) {
  const bytes = new Map();
  const name = (frame) => `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${frame.lineNumber + 1}`;
  const walk = (node, scripted, ours) => {
    const frame = node.callFrame;
    const script = frame.url === '' ? scripted : name(frame);
    const own = frame.url.includes('/dist/') ? name(frame) : ours;
    if (node.selfSize > 0) {
      let key = frame.url === '' && script !== undefined ? `${frame.functionName || '(native)'} in ${script}` : name(frame);
      if (own !== undefined && own !== script) key += ` ← ${own}`;
      bytes.set(key, (bytes.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, script, own);
  };
  walk(profile.head, undefined, undefined);
  return [...bytes].sort((a, b) => b[1] - a[1]).map(([site, size]) => ({ site, bytes: size }));
}
