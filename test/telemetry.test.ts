import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { RuntimeMetrics } from '../src/telemetry/runtime.js';
import { createTelemetry } from '../src/telemetry/telemetry.js';
import { storedGzipMember } from '../src/http/gzip.js';
import { PROMTOOL_HINT, requireTool } from './support/tools.js';

const open: RuntimeMetrics[] = [];
function runtime(): RuntimeMetrics {
  const metrics = new RuntimeMetrics();
  open.push(metrics);
  return metrics;
}
afterEach(() => {
  for (const metrics of open.splice(0)) metrics.close();
});

/** `# HELP` and `# TYPE` lines: a family's name, type and help text. */
const headers = (text: string) => text.split('\n').filter((line) => line.startsWith('# '));
/** The value of an unlabelled sample. */
function sample(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!match) throw new Error(`no sample ${name} in:\n${text}`);
  return Number(match[1]);
}

// Deliberately not rendered; see src/telemetry/runtime.ts for why.
const LEFT_OUT = [
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_requests',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
  'nodejs_eventloop_lag_seconds',
];

describe('the process and runtime metrics', () => {
  it("have the names, types and help texts of prom-client's default metrics, less those left out on purpose", async () => {
    const reference = new Registry();
    collectDefaultMetrics({ register: reference });
    const theirs = headers(await reference.metrics()).filter((line) => !LEFT_OUT.includes(line.split(' ')[2]!));
    expect(headers(runtime().render())).toEqual(theirs);
  });

  it('read the values prom-client reads', async () => {
    const text = runtime().render();
    // Counted the same way a moment apart: allow for descriptors opened in between.
    expect(Math.abs(sample(text, 'process_open_fds') - (readdirSync('/proc/self/fd').length - 1))).toBeLessThanOrEqual(2);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(10e6);
    expect(sample(text, 'process_virtual_memory_bytes')).toBeGreaterThan(sample(text, 'process_resident_memory_bytes'));
    expect(sample(text, 'process_start_time_seconds')).toBeCloseTo(Date.now() / 1000 - process.uptime(), -1);
    expect(sample(text, 'process_cpu_seconds_total')).toBeCloseTo(sample(text, 'process_cpu_user_seconds_total') + sample(text, 'process_cpu_system_seconds_total'), 6);
    expect(text).toContain(`nodejs_version_info{version="${process.version}",`);
    expect(text).toMatch(/^nodejs_heap_space_size_used_bytes\{space="old"\} [1-9]\d*$/m);
  });

  it('read nothing through their /proc descriptor once closed, though the kernel has given its number to another file', () => {
    // Each descriptor with the file it is open on; a listing includes its own directory's
    // descriptor, closed by the time it is read, and the next open may take its number.
    const open = () =>
      new Map(
        readdirSync('/proc/self/fd').flatMap((fd) => {
          try {
            return [[fd, readlinkSync(`/proc/self/fd/${fd}`)] as const];
          } catch {
            return [];
          }
        }),
      );
    const before = open();
    const metrics = new RuntimeMetrics();
    const statusFd = [...open()].find(([fd, file]) => before.get(fd) !== file && file.endsWith('/status'))?.[0];
    expect(statusFd).toBeDefined();
    metrics.close();
    const dir = mkdtempSync(join(tmpdir(), 'fbx-'));
    writeFileSync(join(dir, 'status'), 'Name:\tnot-us\nVmSize:\t7 kB\nVmRSS:\t7 kB\nVmData:\t7 kB\n');
    const other = openSync(join(dir, 'status'), 'r');
    try {
      expect(String(other)).toBe(statusFd); // the number is reused, or this test proves nothing
      const text = metrics.render();
      expect(text).not.toMatch(/^process_(virtual_memory|heap)_bytes 7168$/m);
      expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(10e6);
      metrics.close(); // a second close must not close the other file
      expect(readFileSync(other, 'utf8')).toContain('not-us');
    } finally {
      closeSync(other);
      rmSync(dir, { recursive: true });
    }
  });

  it('count garbage collections by kind, with cumulative buckets', async () => {
    const metrics = runtime();
    let garbage: unknown[] = [];
    for (let i = 0; i < 200_000; i++) garbage.push({ i });
    garbage = [];
    // The GC observer is told asynchronously.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const text = metrics.render();
    const count = sample(text, 'nodejs_gc_duration_seconds_count\\{kind="minor"\\}');
    expect(count).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_gc_duration_seconds_bucket\\{le="\\+Inf",kind="minor"\\}')).toBe(count);
    const buckets = [...text.matchAll(/^nodejs_gc_duration_seconds_bucket\{le="[^"]+",kind="minor"\} (\d+)$/gm)].map((m) => Number(m[1]));
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
  });

  it("render the exporter's own metrics again when they change, and only then", async () => {
    const telemetry = createTelemetry({ version: '1.2.3', processMetrics: false });
    const metrics = telemetry.registry.metrics.bind(telemetry.registry);
    let renders = 0;
    telemetry.registry.metrics = () => (renders++, metrics());
    const first = await telemetry.render();
    expect(await telemetry.render()).toBe(first);
    expect(renders).toBe(1);
    telemetry.countResponse(200);
    expect(await telemetry.render()).toMatch(/^flashback_exporter_api_requests_total\{code="200"\} 1$/m);
    telemetry.configLoaded(true, 1_700_000_000_000);
    const loaded = await telemetry.render();
    expect(loaded).toMatch(/^flashback_exporter_config_last_reload_successful 1$/m);
    expect(loaded).toMatch(/^flashback_exporter_config_last_reload_success_timestamp_seconds 1700000000$/m);
    telemetry.configLoaded(false, 1_700_000_100_000);
    expect(await telemetry.render()).toMatch(/^flashback_exporter_config_last_reload_successful 0$/m);
    expect(await telemetry.render()).toMatch(/^flashback_exporter_config_last_reload_success_timestamp_seconds 1700000000$/m);
    expect(renders).toBe(4);
  });

  it('pass promtool check metrics without a remark, together with the exporter\'s own', async () => {
    const promtool = requireTool('promtool', PROMTOOL_HINT);
    const telemetry = createTelemetry({ version: '1.2.3', processMetrics: true });
    try {
      telemetry.countResponse(200);
      const result = spawnSync(promtool, ['check', 'metrics'], { input: await telemetry.render(), encoding: 'utf8' });
      expect(result.stdout + result.stderr).toBe('');
      expect(result.status).toBe(0);
    } finally {
      telemetry.close();
    }
  });
});

describe('a stored gzip member', () => {
  it('inflates to its input, across the 64 KiB block boundary and for nothing at all', () => {
    for (const size of [0, 1, 65_535, 65_536, 200_000]) {
      const data = Buffer.alloc(size, 'a');
      expect(gunzipSync(storedGzipMember(data)).equals(data)).toBe(true);
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 140_000 }), (bytes) => {
        expect(gunzipSync(storedGzipMember(Buffer.from(bytes))).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('follows other members as part of one gzip stream', () => {
    const first = Buffer.from('# HELP a A.\n');
    const second = Buffer.from('a 1\n');
    const stream = Buffer.concat([storedGzipMember(first), storedGzipMember(second)]);
    expect(gunzipSync(stream).toString()).toBe('# HELP a A.\na 1\n');
  });
});
