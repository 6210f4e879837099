import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeFlashback, type Reply } from './support/fake-flashback.js';
import { fixture, jsonFixture } from './support/fixtures.js';
import { eventually, sampleValue, startExporter, type RunningExporter } from './support/exporter.js';
import { promtoolCheckMetrics } from './support/tools.js';

// One unit per fault: the fake answers by the unit's `id`. Each fault is injected after a
// round of good answers, so the test also sees what happens to the last good values.
const unsorted = { ...jsonFixture<Record<string, unknown>>('api/ok.json') };
const extraFields = {
  ...unsorted,
  series: [{ ts: 1704150000, tokensIn: 5, tokensOut: 6, requests: 7, reasoningTokens: 42, label: 'x', nested: { a: 1 } }],
};

interface Fault {
  readonly reply: Reply;
  /** The reason counted, or undefined when the poll must still succeed. */
  readonly reason: string | undefined;
}

const FAULTS: Record<string, Fault> = {
  hang: { reply: { hang: true }, reason: 'timeout' },
  'stalled-body': { reply: { body: '{"success":true,"series":[', stallBody: true }, reason: 'timeout' },
  slow: { reply: { body: jsonFixture('api/ok.json'), delayMs: 300 }, reason: undefined },
  'rate-limited': { reply: { status: 429, headers: { 'retry-after': '1' }, body: { success: false, message: 'Too many requests' } }, reason: 'rate_limited' },
  'http-500': { reply: { status: 500, body: { success: false, message: 'Internal error' } }, reason: 'http_5xx' },
  'html-503': { reply: { status: 503, body: fixture('api/error-page.html') }, reason: 'http_5xx' },
  'bad-request': { reply: { status: 400, body: jsonFixture('api/bad-request.json') }, reason: 'http_4xx' },
  unauthorized: { reply: { status: 401, body: { success: false, message: 'Unauthorized' } }, reason: 'unauthorized' },
  malformed: { reply: { body: fixture('api/truncated.json') }, reason: 'invalid_response' },
  array: { reply: { body: jsonFixture('api/array.json') }, reason: 'invalid_response' },
  'success-false': { reply: { body: jsonFixture('api/api-error.json') }, reason: 'api_error' },
  'missing-fields': { reply: { body: jsonFixture('api/missing-fields.json') }, reason: 'invalid_response' },
  'wrong-type-string': { reply: { body: jsonFixture('api/wrong-type-string.json') }, reason: 'invalid_response' },
  'wrong-type-null': { reply: { body: jsonFixture('api/wrong-type-null.json') }, reason: 'invalid_response' },
  'huge-body': { reply: { streamBytes: 200 * 1024 * 1024 }, reason: 'too_large' },
  reset: { reply: { reset: true }, reason: 'network' },
  'empty-series': { reply: { body: jsonFixture('api/empty-series.json') }, reason: undefined },
  unsorted: { reply: { body: unsorted }, reason: undefined },
  'extra-fields': { reply: { body: extraFields }, reason: undefined },
  'odd-field-names': { reply: { body: jsonFixture('api/odd-field-names.json') }, reason: undefined },
  'infinite-numbers': { reply: { body: fixture('api/huge-number.json') }, reason: undefined },
};

const GOOD = { body: jsonFixture('api/partial-bucket.json') };

let fake: FakeFlashback;
let running: RunningExporter;
let before: string;
let after: string;
let heapGrowth: number;

const metrics = async () => (await fetch(`${running.url}/metrics`)).text();
const unit = (name: string) => ({ target: name });

beforeAll(async () => {
  let faulty = false;
  fake = await FakeFlashback.start((req) => (faulty && req.query.id !== 'healthy' ? FAULTS[req.query.id!]!.reply : GOOD));
  const targets = ['healthy', ...Object.keys(FAULTS)].map((id) => `  - { name: ${id}, scope: repo, id: ${id} }`).join('\n');
  running = await startExporter(`
api:
  baseUrl: ${fake.url}
  timeout: 1s
  retries: 0
  maxResponseBytes: 1MiB
defaults:
  schedule: "0 0 0 1 1 *"
targets:
${targets}
`);
  await eventually(() => running.exporter.store.ready, 10_000, 'the good round');
  before = await metrics();
  faulty = true;
  const heap = process.memoryUsage().heapUsed;
  await running.exporter.pollOnce();
  heapGrowth = process.memoryUsage().heapUsed - heap;
  after = await metrics();
}, 30_000);

afterAll(async () => {
  await running?.close();
  await fake?.close();
});

describe('a misbehaving upstream', () => {
  it('starts from a round in which every unit is up', () => {
    for (const name of ['healthy', ...Object.keys(FAULTS)]) expect(sampleValue(before, 'flashback_exporter_target_up', unit(name))).toBe(1);
  });

  it.each(Object.entries(FAULTS).filter(([, f]) => f.reason !== undefined))('counts %s under its reason, sets target_up 0 and keeps the last good values', (name, fault) => {
    expect(sampleValue(after, 'flashback_exporter_target_up', unit(name))).toBe(0);
    expect(sampleValue(after, 'flashback_exporter_poll_errors_total', { ...unit(name), reason: fault.reason! })).toBe(1);
    expect(after.match(new RegExp(`^flashback_exporter_poll_errors_total\\{target="${name}",`, 'gm'))).toHaveLength(1);
    expect(sampleValue(after, 'flashback_private_chat_input_tokens', unit(name))).toBe(300);
  });

  it.each(Object.entries(FAULTS).filter(([, f]) => f.reason === undefined))('publishes %s as a successful poll', (name) => {
    expect(sampleValue(after, 'flashback_exporter_target_up', unit(name))).toBe(1);
    expect(after).not.toMatch(new RegExp(`poll_errors_total\\{target="${name}",`));
  });

  it('leaves the healthy unit untouched by every other unit\'s trouble', () => {
    expect(sampleValue(after, 'flashback_exporter_target_up', unit('healthy'))).toBe(1);
    expect(sampleValue(after, 'flashback_private_chat_input_tokens', unit('healthy'))).toBe(300);
    expect(after).not.toMatch(/poll_errors_total\{target="healthy",/);
  });

  it('publishes the greatest ts of an unsorted series, and no data at all for an empty one', () => {
    expect(sampleValue(after, 'flashback_private_chat_bucket_timestamp_seconds', unit('unsorted'))).toBe(1704150000);
    expect(sampleValue(after, 'flashback_private_chat_input_tokens', unit('unsorted'))).toBe(900);
    expect(after).not.toMatch(/^flashback_private_chat_(input_tokens|output_tokens|requests|bucket_timestamp_seconds)\{target="empty-series"/m);
  });

  it('publishes extra numeric fields and ignores the rest', () => {
    expect(sampleValue(after, 'flashback_private_chat_reasoning_tokens', unit('extra-fields'))).toBe(42);
    expect(after).not.toMatch(/flashback_private_chat_(label|nested)/);
  });

  it('publishes no added field whose metric promtool would remark on, and counts and logs each one it drops', () => {
    expect(promtoolCheckMetrics(after)).toEqual({ code: 0, remarks: '' });
    expect(sampleValue(after, 'flashback_private_chat_cached_tokens', unit('odd-field-names'))).toBe(80);
    expect(after).not.toMatch(/^flashback_private_chat_(requests_total|count|bucket|latency_ms|tokens_in_count)[{ ]/m);
    expect(sampleValue(after, 'flashback_exporter_dropped_fields_total', { reason: 'invalid_name' })).toBe(14);
    expect(sampleValue(after, 'flashback_exporter_dropped_fields_total', { reason: 'name_taken' })).toBe(1);
    expect(sampleValue(after, 'flashback_exporter_dropped_fields_total', { reason: 'too_many_fields' })).toBe(0);
    const warned = running.logs.filter((l) => l.msg === 'not publishing a field the API added to its time buckets');
    expect(warned).toHaveLength(15);
    expect(warned.find((l) => l.field === 'latencyMs')).toMatchObject({ level: 'warn', reason: 'invalid_name', metric: 'flashback_private_chat_latency_ms', why: 'has the abbreviated unit ms' });
  });

  it('never publishes a value that is not a finite number', () => {
    expect(after).not.toMatch(/ (NaN|Nan|[+-]?Inf)$/m);
    expect(sampleValue(after, 'flashback_private_chat_input_tokens', unit('infinite-numbers'))).toBe(5);
    expect(after).not.toMatch(/cached_tokens\{target="infinite-numbers"/);
  });

  it('cuts a huge body off while streaming instead of buffering it', () => {
    // 1 MiB allowed; the fake could have sent 200 MiB. Socket buffers let a little more through.
    expect(fake.streamedBytes).toBeLessThan(16 * 1024 * 1024);
    expect(heapGrowth).toBeLessThan(64 * 1024 * 1024);
  });

  it('logs one line per failed poll, naming the unit and the reason, never the token', () => {
    const failures = running.logs.filter((l) => l.msg === 'poll failed');
    expect(failures).toHaveLength(Object.values(FAULTS).filter((f) => f.reason !== undefined).length);
    expect(failures.find((l) => l.target === 'unauthorized')).toMatchObject({ level: 'warn', reason: 'unauthorized', status: 401 });
    expect(JSON.stringify(running.logs)).not.toContain('test-token');
  });
});
