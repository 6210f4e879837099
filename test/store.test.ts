import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Gauge, Counter, Registry } from 'prom-client';
import { MetricStore, SnapshotReleasedError, type Piece, type PollSuccess, type UnitSpec } from '../src/store/store.js';
import type { DroppedField } from '../src/store/families.js';
import { pointFields, type SeriesPoint } from '../src/api/response.js';
import { sampleLines } from './support/exporter.js';
import { jsonFixture } from './support/fixtures.js';
import { promtoolCheckMetrics } from './support/tools.js';

function spec(name: string, extra: [string, string][] = [], staleAfterMs = 600_000): UnitSpec {
  const unitLabels: [string, string][] = [['target', name], ['model', ''], ['user_id', ''], ['api_key_id', ''], ['ai_llm_id', '']];
  return {
    key: name,
    id: name,
    unitLabels,
    dataLabels: [['target', name], ['scope', 'org'], ['scope_id', ''], ['window', '24h'], ['bucket_size', '1h'], ...unitLabels.slice(1), ...extra],
    staleAfterMs,
  };
}

function success(at: number, tokensIn: number, extra: Partial<PollSuccess> = {}): PollSuccess {
  return {
    at,
    durationSeconds: 0.25,
    bucket: { ts: 1704150000, fields: [['tokensIn', tokensIn], ['tokensOut', 7], ['requests', 3]] },
    summary: [['p50', 10], ['p90', 20]],
    ...extra,
  };
}

function labelText(pairs: readonly (readonly [string, string])[]): string {
  return pairs.map(([name, value]) => `${name}="${value}"`).join(',');
}

/** A store, and the fields it reports dropped. */
function storeHearingDrops(): { store: MetricStore; dropped: DroppedField[] } {
  const dropped: DroppedField[] = [];
  return { store: new MetricStore({ now: () => 0, onFieldDropped: (d) => dropped.push(d) }), dropped };
}

async function text(store: MetricStore): Promise<string> {
  return Buffer.concat((await store.snapshot()).chunks()).toString();
}

describe('metric store', () => {
  it('replaces a unit\'s data series when a new poll lands', async () => {
    const store = new MetricStore({ now: () => 1_000 });
    store.setUnits([spec('a')]);
    store.recordSuccess('a', success(1_000, 100));
    store.recordSuccess('a', success(1_000, 250));
    const out = await text(store);
    expect(out.match(/^flashback_private_chat_input_tokens\{.*\} (\d+)$/gm)).toEqual([expect.stringMatching(/ 250$/)]);
  });

  it('keeps the last good values after a failed poll, with target_up 0 and the reason counted', async () => {
    const store = new MetricStore({ now: () => 2_000 });
    store.setUnits([spec('a')]);
    store.recordSuccess('a', success(1_000, 100));
    store.recordFailure('a', { at: 2_000, durationSeconds: 1, reason: 'timeout', message: 'slow' });
    store.recordFailure('a', { at: 2_000, durationSeconds: 1, reason: 'timeout', message: 'slow' });
    store.recordFailure('a', { at: 2_000, durationSeconds: 1, reason: 'http_5xx', message: 'HTTP 502' });
    const out = await text(store);
    expect(out).toMatch(/^flashback_private_chat_input_tokens\{target="a".*\} 100$/m);
    expect(out).toMatch(/^flashback_exporter_target_up\{target="a".*\} 0$/m);
    expect(out).toMatch(/^flashback_exporter_poll_errors_total\{target="a",.*,reason="timeout"\} 2$/m);
    expect(out).toMatch(/^flashback_exporter_poll_errors_total\{target="a",.*,reason="http_5xx"\} 1$/m);
    expect(out).toMatch(/^flashback_exporter_last_success_timestamp_seconds\{target="a".*\} 1$/m);
  });

  it('drops a unit\'s data series once it has not been refreshed for staleAfter, keeping its own series', async () => {
    let now = 0;
    const store = new MetricStore({ now: () => now });
    store.setUnits([spec('a', [], 60_000), spec('b', [], 60_000)]);
    store.recordSuccess('a', success(0, 100));
    store.recordSuccess('b', success(30_000, 200));
    now = 59_999;
    expect(await text(store)).toMatch(/input_tokens\{target="a"/);
    now = 60_000;
    const out = await text(store);
    expect(out).not.toMatch(/flashback_private_chat_\w+\{target="a"/);
    expect(out).toMatch(/input_tokens\{target="b"/);
    expect(out).toMatch(/^flashback_exporter_target_up\{target="a".*\} 1$/m);
    expect(store.statuses().find((u) => u.id === 'a')?.hasData).toBe(false);
  });

  it('publishes no data series for an empty series, and target_up 1', async () => {
    const store = new MetricStore();
    store.setUnits([spec('a')]);
    store.recordSuccess('a', success(Date.now(), 1, { bucket: undefined, summary: undefined }));
    const out = await text(store);
    expect(out).not.toMatch(/flashback_private_chat_/);
    expect(out).toMatch(/^flashback_exporter_target_up\{target="a".*\} 1$/m);
  });

  it('publishes extra numeric fields under their snake_case name and never a non-finite value', async () => {
    const store = new MetricStore();
    store.setUnits([spec('a')]);
    store.recordSuccess('a', {
      ...success(Date.now(), 5),
      bucket: { ts: 1, fields: [['tokensIn', 5], ['cachedTokens', 9], ['HTTPRetries', 2], ['input_tokens', 99], ['bad', Number.NaN], ['worse', Number.POSITIVE_INFINITY]] },
      summary: [['p50', Number.NEGATIVE_INFINITY], ['max', 4]],
    });
    const out = await text(store);
    expect(out).toMatch(/^flashback_private_chat_cached_tokens\{.*\} 9$/m);
    expect(out).toMatch(/^flashback_private_chat_http_retries\{.*\} 2$/m);
    // `input_tokens` would collide with tokensIn's metric: it is not published twice.
    expect(out.match(/^flashback_private_chat_input_tokens\{/gm)).toHaveLength(1);
    expect(out).not.toMatch(/NaN|Inf/);
    expect(out).toMatch(/stat="max"\} 4$/m);
    expect(out).not.toMatch(/stat="p50"/);
  });

  it('removes a unit\'s series at once when it leaves, and keeps the data of units that stay', async () => {
    const store = new MetricStore();
    store.setUnits([spec('a'), spec('b')]);
    store.recordSuccess('a', success(Date.now(), 1));
    store.recordSuccess('b', success(Date.now(), 2));
    store.setUnits([spec('b'), spec('c')]);
    const out = await text(store);
    expect(out).not.toMatch(/target="a"/);
    expect(out).toMatch(/input_tokens\{target="b".*\} 2$/m);
    expect(out).not.toMatch(/target="c"/);
    expect(store.ready).toBe(false);
  });

  it('is ready once every unit has finished a poll, whether it succeeded or failed', () => {
    const store = new MetricStore();
    store.setUnits([spec('a'), spec('b')]);
    expect(store.ready).toBe(false);
    store.recordFailure('a', { at: 1, durationSeconds: 1, reason: 'network', message: 'refused' });
    expect(store.ready).toBe(false);
    store.recordSuccess('b', success(1, 1));
    expect(store.ready).toBe(true);
  });

  it('serves the same snapshot until something changes', async () => {
    const store = new MetricStore();
    store.setUnits([spec('a')]);
    store.recordSuccess('a', success(Date.now(), 1));
    const first = await store.snapshot();
    expect(await store.snapshot()).toBe(first);
    store.recordSuccess('a', success(Date.now(), 2));
    expect(await store.snapshot()).not.toBe(first);
  });

  it('keeps each snapshot compressed once: its gzip pieces are the same bytes every time, and inflate to its text', async () => {
    const store = new MetricStore();
    store.setUnits([spec('a')]);
    store.recordSuccess('a', success(Date.now(), 1));
    const snapshot = await store.snapshot();
    const gzip = () => Buffer.concat([...snapshot.gzipPieces()].map((piece) => Buffer.from(piece.text)));
    const zipped = gzip();
    expect(zipped.length).toBe(snapshot.gzipLength);
    expect(gzip().equals(zipped)).toBe(true);
    expect(gunzipSync(zipped).equals(Buffer.concat(snapshot.chunks()))).toBe(true);
  });

  it("lends a retired snapshot's gzip pieces to the next one only after every response has written them", async () => {
    const store = new MetricStore();
    store.setUnits([spec('a')]);
    store.recordSuccess('a', success(Date.now(), 1));
    const first = await store.snapshot();
    const [held] = [...first.gzipPieces()];
    const heldBytes = Buffer.from(held!.text);
    // A response is still writing `held` when a newer snapshot retires the first.
    store.recordSuccess('a', success(Date.now(), 2));
    const second = await store.snapshot();
    const [other] = [...second.gzipPieces()];
    expect(other!.text.buffer).not.toBe(held!.text.buffer);
    expect(held!.text.equals(heldBytes)).toBe(true);
    other!.done();
    // Written: the first snapshot's Buffer goes back to the pool, and the next snapshot gets it.
    held!.done();
    store.recordSuccess('a', success(Date.now(), 3));
    const third = await store.snapshot();
    const [reused] = [...third.gzipPieces()];
    expect([held!.text.buffer, other!.text.buffer]).toContain(reused!.text.buffer);
    expect(gunzipSync(Buffer.from(reused!.text)).toString()).toMatch(/input_tokens\{[^}]*\} 3$/m);
  });
  it('renders a block whose lines outgrow its scratch space, every line intact', async () => {
    // 128 units (one block) × 8 statistics with 400-character names: 430 KB of line tails,
    // more than the 256 KiB a rebuild starts with.
    const store = new MetricStore({ now: () => 0 });
    const specs = Array.from({ length: 128 }, (_, i) => spec(`u${i}`));
    const stats = Array.from({ length: 8 }, (_, j) => `${String(j).padStart(3, '0')}${'x'.repeat(397)}`);
    store.setUnits(specs);
    for (const [i, s] of specs.entries()) store.recordSuccess(s.key, success(0, i, { summary: stats.map((name, j) => [name, i * 10 + j] as const) }));
    const lines = (await text(store)).split('\n').filter((l) => l.startsWith('flashback_private_chat_window_stat{'));
    expect(lines).toHaveLength(128 * 8);
    for (const [n, line] of lines.entries()) {
      const [i, j] = [Math.floor(n / 8), n % 8];
      expect(line).toBe(`flashback_private_chat_window_stat{${labelText(specs[i]!.dataLabels)},stat="${stats[j]}"} ${i * 10 + j}`);
    }
  });
  it('publishes every statistic of a unit that has 70,000 of them, more than a 16-bit count holds', async () => {
    const store = new MetricStore({ now: () => 0 });
    store.setUnits([spec('a'), spec('b')]);
    const summary = Array.from({ length: 70_000 }, (_, j) => [`s${j}`, j] as const);
    store.recordSuccess('a', success(0, 1, { summary }));
    await store.snapshot();
    // Rebuilt again with unit a unchanged: its lines are carried over from the first view.
    store.recordSuccess('b', success(0, 2));
    const out = await text(store);
    const stats = out.split('\n').filter((l) => l.startsWith('flashback_private_chat_window_stat{target="a"'));
    expect(stats).toHaveLength(70_000);
    expect(stats[69_999]).toMatch(/,stat="s69999"\} 69999$/);
    expect(out).toMatch(/^flashback_private_chat_window_stat\{target="b",.*,stat="p90"\} 20$/m);
  });
});

describe('fields the API adds to its time buckets', () => {
  /** The store's text after units publish the odd fixture's bucket, and the fields it dropped. */
  async function publishOddFields(keys: readonly string[]): Promise<{ out: string; dropped: DroppedField[] }> {
    const point = jsonFixture<{ series: SeriesPoint[] }>('api/odd-field-names.json').series[0]!;
    const { store, dropped } = storeHearingDrops();
    store.setUnits([...new Set(keys)].map((key) => spec(key)));
    for (const key of keys) store.recordSuccess(key, success(0, 1, { bucket: { ts: point.ts, fields: pointFields(point) } }));
    return { out: await text(store), dropped };
  }

  it('publishes none whose metric promtool would remark on, and reports each one it drops once', async () => {
    const { out, dropped } = await publishOddFields(['a', 'b', 'a']);
    expect(promtoolCheckMetrics(out)).toEqual({ code: 0, remarks: '' });
    expect(out.match(/(?<=^# TYPE )flashback_private_chat_\w+/gm)).toEqual(
      ['input_tokens', 'output_tokens', 'requests', 'bucket_timestamp_seconds', 'buckets_filled', 'cached_tokens', 'countdown', 'http_retries', 'latency_seconds', 'prompt_bytes', 'thermometers', 'total_cost', 'window_stat'].map(
        (name) => `flashback_private_chat_${name}`,
      ),
    );
    expect(dropped.map((d) => [d.field, d.reason])).toEqual([
      ...['requestsTotal', 'count', 'bucket', 'latencyMs', 'tokensInCount', 'errorsSum', 'requestsCreated', 'modelInfo', 'queueGauge', 'planB', 'durationMinutes', 'contextKilobytes', 'payloadBits'].map((field) => [field, 'invalid_name']),
      ['input_tokens', 'name_taken'],
      ['--', 'invalid_name'],
    ]);
    expect(dropped.find((d) => d.field === 'requestsTotal')).toMatchObject({ metric: 'flashback_private_chat_requests_total', why: 'ends in _total, a suffix Prometheus keeps for other metric types' });
    expect(dropped.find((d) => d.field === 'latencyMs')).toMatchObject({ why: 'has the abbreviated unit ms' });
  });

  it('drops exactly those whose gauge promtool remarks on, and those ending in a suffix only OpenMetrics reserves', async () => {
    const { out, dropped } = await publishOddFields(['a']);
    const published = out.match(/(?<=^# TYPE )flashback_private_chat_\w+/gm)!;
    const rejected = dropped.filter((d) => d.reason === 'invalid_name' && d.metric !== undefined).map((d) => d.metric!);
    const { remarks } = promtoolCheckMetrics([...published, ...rejected].map((name) => `# HELP ${name} h\n# TYPE ${name} gauge\n${name} 1\n`).join(''));
    const flagged = new Set(remarks.split('\n').filter(Boolean).map((line) => line.split(' ')[0]));
    expect([...flagged].sort()).toEqual(rejected.filter((name) => !/_(created|info|gcount|gsum)$/.test(name)).sort());
  });
});

describe('families of extra fields over time', () => {
  /** A poll's success with the documented fields and one extra field per name. */
  const withFields = (names: readonly string[]) => success(0, 1, { bucket: { ts: 1, fields: [['tokensIn', 1], ...names.map((name, i) => [name, i] as const)] } });
  const fieldNames = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `field${from + i}Tokens`);
  const extraFamilies = (out: string) => out.match(/(?<=^# TYPE flashback_private_chat_)field\d+_tokens/gm) ?? [];

  it('are 32 at most: the fields beyond are dropped and reported as too many, once each', async () => {
    const { store, dropped } = storeHearingDrops();
    store.setUnits([spec('a'), spec('b')]);
    store.recordSuccess('a', withFields(fieldNames(0, 40)));
    store.recordSuccess('b', withFields(fieldNames(0, 40)));
    const out = await text(store);
    expect(extraFamilies(out)).toHaveLength(32);
    expect(out).not.toMatch(/field3[2-9]_tokens/);
    expect(dropped.map((d) => [d.field, d.reason])).toEqual(fieldNames(32, 40).map((field) => [field, 'too_many_fields']));
  });

  it('frees the family of a field no unit sends any more, making room for one that waited', async () => {
    const { store, dropped } = storeHearingDrops();
    store.setUnits([spec('a'), spec('b')]);
    store.recordSuccess('a', withFields(fieldNames(0, 32)));
    store.recordSuccess('b', withFields(fieldNames(32, 36)));
    expect(dropped).toHaveLength(4);
    store.recordSuccess('a', withFields(fieldNames(0, 16)));
    await store.snapshot();
    store.recordSuccess('b', withFields(fieldNames(32, 36)));
    const out = await text(store);
    expect(extraFamilies(out)).toEqual([...fieldNames(0, 16), ...fieldNames(32, 36)].map((f) => f.replace('Tokens', '_tokens')).sort());
    expect(dropped).toHaveLength(4);
  });

  it('reports a field that waits for room once, however often a freed family makes it wait again', async () => {
    const { store, dropped } = storeHearingDrops();
    store.setUnits([spec('a'), spec('b')]);
    store.recordSuccess('a', withFields(fieldNames(0, 32)));
    store.recordSuccess('b', withFields(fieldNames(32, 34)));
    expect(dropped.map((d) => [d.field, d.reason])).toEqual(fieldNames(32, 34).map((field) => [field, 'too_many_fields']));
    // One family freed: the first field that waited takes it, the second waits again, unreported.
    store.recordSuccess('a', withFields(fieldNames(0, 31)));
    await store.snapshot();
    store.recordSuccess('b', withFields(fieldNames(32, 34)));
    const out = await text(store);
    expect(out).toMatch(/field32_tokens\{/);
    expect(out).not.toMatch(/field33_tokens/);
    expect(dropped).toHaveLength(2);
  });

  it('go to the first of two fields with one snake-case name, and to the second once the first is gone', async () => {
    const { store, dropped } = storeHearingDrops();
    store.setUnits([spec('a'), spec('b')]);
    store.recordSuccess('a', withFields(['field1Tokens']));
    store.recordSuccess('b', withFields(['field1_tokens']));
    expect(await text(store)).toMatch(/^flashback_private_chat_field1_tokens\{target="a".*\n# /m);
    expect(dropped).toMatchObject([{ field: 'field1_tokens', reason: 'name_taken' }]);
    store.recordSuccess('a', withFields([]));
    await store.snapshot();
    store.recordSuccess('b', withFields(['field1_tokens']));
    expect(await text(store)).toMatch(/^flashback_private_chat_field1_tokens\{target="b".*\n# /m);
  });

  it('never runs out of room for field names that change on every poll: each frees the last one\'s family', async () => {
    const { store, dropped } = storeHearingDrops();
    store.setUnits([spec('a')]);
    for (let poll = 0; poll < 1_000; poll++) store.recordSuccess('a', withFields([`field${poll}Tokens`]));
    expect(extraFamilies(await text(store))).toEqual(['field999_tokens']);
    expect(dropped).toEqual([]);
  });
});

describe('pre-rendered output against prom-client', () => {
  it('writes byte-for-byte the sample lines prom-client writes for the same data, escaping included', async () => {
    const nasty = ['plain', 'with "quotes"', 'back\\slash', 'new\nline', 'ünïcødé ✓', 'trailing\\'];
    const store = new MetricStore({ now: () => 0 });
    const registry = new Registry();
    const names = ['target', 'scope', 'scope_id', 'window', 'bucket_size', 'model', 'user_id', 'api_key_id', 'ai_llm_id', 'team'];
    const input = new Gauge({ name: 'flashback_private_chat_input_tokens', help: 'h', labelNames: names, registers: [registry] });
    const stat = new Gauge({ name: 'flashback_private_chat_window_stat', help: 'h', labelNames: [...names, 'stat'], registers: [registry] });
    const up = new Gauge({ name: 'flashback_exporter_target_up', help: 'h', labelNames: ['target', 'model', 'user_id', 'api_key_id', 'ai_llm_id'], registers: [registry] });
    const errors = new Counter({ name: 'flashback_exporter_poll_errors_total', help: 'h', labelNames: ['target', 'model', 'user_id', 'api_key_id', 'ai_llm_id', 'reason'], registers: [registry] });

    const specs = nasty.map((value, i) => spec(`t${i}`, [['team', value]]));
    store.setUnits(specs);
    specs.forEach((s, i) => {
      const values = [12345 + i, 0.5 * i, 1e21 + i];
      store.recordSuccess(s.key, { at: 0, durationSeconds: 0, bucket: { ts: 1, fields: [['tokensIn', values[0]!]] }, summary: [[nasty[i]!, values[1]!], ['big', values[2]!]] });
      store.recordFailure(s.key, { at: 0, durationSeconds: 0, reason: 'timeout', message: '' });
      const labels = Object.fromEntries(s.dataLabels);
      input.set(labels, values[0]!);
      stat.set({ ...labels, stat: nasty[i]! }, values[1]!);
      stat.set({ ...labels, stat: 'big' }, values[2]!);
      up.set(Object.fromEntries(s.unitLabels), 0);
      errors.inc({ ...Object.fromEntries(s.unitLabels), reason: 'timeout' });
    });

    const ours = sampleLines(await text(store)).filter((l) => /^(flashback_private_chat_input_tokens|flashback_private_chat_window_stat|flashback_exporter_target_up|flashback_exporter_poll_errors_total)\{/.test(l));
    expect(ours).toHaveLength(nasty.length * 5);
    expect(ours).toEqual(sampleLines(await registry.metrics()));
  });
});

describe('store blocks under arbitrary changes', () => {
  // A reference model: what each unit should currently publish, rendered the simple way.
  type Op = { kind: 'set'; keys: number[] } | { kind: 'ok'; key: number; value: number; stats: number } | { kind: 'fail'; key: number } | { kind: 'empty'; key: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), keys: fc.uniqueArray(fc.integer({ min: 0, max: 400 }), { maxLength: 300 }) }),
    // Up to 12 summary statistics: units of one block with different counts of lines.
    fc.record({ kind: fc.constant('ok' as const), key: fc.integer({ min: 0, max: 400 }), value: fc.integer({ min: 0, max: 1e9 }), stats: fc.integer({ min: 0, max: 12 }) }),
    fc.record({ kind: fc.constant('fail' as const), key: fc.integer({ min: 0, max: 400 }) }),
    fc.record({ kind: fc.constant('empty' as const), key: fc.integer({ min: 0, max: 400 }) }),
  );

  it('always publishes exactly the series of the current units, each family in one group', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const store = new MetricStore({ now: () => 0 });
        const model = new Map<number, { value?: number; stats?: number; up?: number; errors: number }>();
        for (const o of ops) {
          if (o.kind === 'set') {
            store.setUnits(o.keys.map((k) => spec(`u${k}`)));
            for (const k of [...model.keys()]) if (!o.keys.includes(k)) model.delete(k);
            for (const k of o.keys) if (!model.has(k)) model.set(k, { errors: 0 });
          } else if (model.has(o.key)) {
            const m = model.get(o.key)!;
            if (o.kind === 'ok') {
              const summary = Array.from({ length: o.stats }, (_, j) => [`s${j}`, o.value + j] as const);
              store.recordSuccess(`u${o.key}`, { at: 0, durationSeconds: 0, bucket: { ts: 1, fields: [['tokensIn', o.value]] }, summary });
              Object.assign(m, { value: o.value, up: 1, stats: o.stats });
            } else if (o.kind === 'empty') {
              store.recordSuccess(`u${o.key}`, { at: 0, durationSeconds: 0, bucket: undefined, summary: undefined });
              Object.assign(m, { value: undefined, up: 1, stats: 0 });
            } else {
              store.recordFailure(`u${o.key}`, { at: 0, durationSeconds: 0, reason: 'network', message: '' });
              Object.assign(m, { up: 0, errors: m.errors + 1 });
            }
          }
          // Snapshot now and then, so later changes land on blocks that were already built.
          if (o.kind !== 'set') await store.snapshot();
        }
        const out = await text(store);
        const names = out.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
        expect(new Set(names).size).toBe(names.length);
        let current = '';
        for (const line of out.split('\n')) {
          if (line.startsWith('# TYPE ')) current = line.split(' ')[2]!;
          else if (line !== '' && !line.startsWith('#')) expect(line.startsWith(`${current}{`)).toBe(true);
        }
        const got = sampleLines(out).filter((l) => !l.startsWith('flashback_exporter_poll_duration_seconds') && !l.startsWith('flashback_exporter_last_success'));
        const want: string[] = [];
        for (const [k, m] of model) {
          const unit = `target="u${k}",model="",user_id="",api_key_id="",ai_llm_id=""`;
          if (m.value !== undefined) want.push(`flashback_private_chat_input_tokens{target="u${k}",scope="org",scope_id="",window="24h",bucket_size="1h",model="",user_id="",api_key_id="",ai_llm_id=""} ${m.value}`);
          if (m.value !== undefined) want.push(`flashback_private_chat_bucket_timestamp_seconds{target="u${k}",scope="org",scope_id="",window="24h",bucket_size="1h",model="",user_id="",api_key_id="",ai_llm_id=""} 1`);
          for (let j = 0; j < (m.stats ?? 0); j++) {
            want.push(`flashback_private_chat_window_stat{target="u${k}",scope="org",scope_id="",window="24h",bucket_size="1h",model="",user_id="",api_key_id="",ai_llm_id="",stat="s${j}"} ${m.value! + j}`);
          }
          if (m.up !== undefined) want.push(`flashback_exporter_target_up{${unit}} ${m.up}`);
          if (m.errors > 0) want.push(`flashback_exporter_poll_errors_total{${unit},reason="network"} ${m.errors}`);
        }
        expect(got).toEqual(want.sort());
      }),
      { numRuns: 150 },
    );
  });

  // A reader: a response that took a snapshot and asked for its pieces, and reads them later,
  // while polls land and newer snapshots release older ones and reuse their bytes.
  type Reader = { gzip: boolean; want: string; pieces: Iterator<Piece> };
  type ReadOp = { kind: 'poll'; from: number; count: number; value: number; stats: number } | { kind: 'start'; gzip: boolean } | { kind: 'finish'; which: number };
  // Responses finish less often than they start, so that some read across many rebuilds.
  const readOp: fc.Arbitrary<ReadOp> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('poll' as const), from: fc.integer({ min: 0, max: 299 }), count: fc.integer({ min: 1, max: 300 }), value: fc.integer({ min: 0, max: 1e9 }), stats: fc.integer({ min: 0, max: 12 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('start' as const), gzip: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('finish' as const), which: fc.nat() }) },
  );

  it("gives every response its snapshot's exact bytes, however many newer snapshots reuse the bytes of released ones meanwhile", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(readOp, { maxLength: 40 }), async (ops) => {
        const store = new MetricStore({ now: () => 0 });
        const specs = Array.from({ length: 300 }, (_, k) => spec(`u${k}`));
        store.setUnits(specs);
        // Each unit's last poll: what a fresh store, sharing no memory with this one, renders.
        const latest = new Map<string, PollSuccess>();
        const expected = async () => {
          const fresh = new MetricStore({ now: () => 0 });
          fresh.setUnits(specs);
          for (const [key, poll] of latest) fresh.recordSuccess(key, poll);
          return text(fresh);
        };
        const readers: Reader[] = [];
        const finish = (reader: Reader) => {
          const bytes: Buffer[] = [];
          for (let next = reader.pieces.next(); !next.done; next = reader.pieces.next()) {
            bytes.push(Buffer.from(next.value.text));
            next.value.done();
          }
          const body = Buffer.concat(bytes);
          // No units with lines yet: no members, which the server follows with its own.
          expect((reader.gzip && body.length > 0 ? gunzipSync(body) : body).toString()).toBe(reader.want);
        };
        for (const o of ops) {
          if (o.kind === 'poll') {
            const summary = Array.from({ length: o.stats }, (_, j) => [`s${j}`, o.value + j] as const);
            for (let k = o.from; k < Math.min(300, o.from + o.count); k++) {
              latest.set(`u${k}`, success(0, o.value + k, { summary }));
              store.recordSuccess(`u${k}`, latest.get(`u${k}`)!);
            }
          } else if (o.kind === 'start') {
            const snapshot = await store.snapshot();
            const want = await expected();
            expect(Buffer.concat(snapshot.chunks()).toString()).toBe(want);
            readers.push({ gzip: o.gzip, want, pieces: (o.gzip ? snapshot.gzipPieces() : snapshot.pieces())[Symbol.iterator]() });
          } else if (readers.length > 0) {
            finish(readers.splice(o.which % readers.length, 1)[0]!);
          }
        }
        for (const reader of readers) finish(reader);
      }),
      { numRuns: 100 },
    );
  });

  it("keeps a response's snapshot intact while two newer rounds of every unit reuse the bytes their blocks let go", async () => {
    // 300 units with 12 statistics each: views of every size, small ones sharing slabs and
    // larger ones (a block's statistics) in slabs of their own.
    const store = new MetricStore({ now: () => 0 });
    store.setUnits(Array.from({ length: 300 }, (_, k) => spec(`u${k}`)));
    const round = (value: number) => {
      for (let k = 0; k < 300; k++) store.recordSuccess(`u${k}`, success(0, value + k, { summary: Array.from({ length: 12 }, (_, j) => [`s${j}`, value + k + j] as const) }));
    };
    round(1_000);
    const first = await store.snapshot();
    const want = Buffer.concat(first.chunks()).toString();
    const response = first.gzipPieces()[Symbol.iterator]();
    round(5_000);
    await store.snapshot();
    round(9_000);
    const third = Buffer.concat((await store.snapshot()).chunks()).toString();
    const body: Buffer[] = [];
    for (let next = response.next(); !next.done; next = response.next()) {
      body.push(Buffer.from(next.value.text));
      next.value.done();
    }
    expect(gunzipSync(Buffer.concat(body)).toString()).toBe(want);
    expect(third).toMatch(/input_tokens\{target="u299",[^}]*\} 9299$/m);
  });

  it('allocates no new slabs for rounds of polls once the first rounds are done, scraped or not', async () => {
    const store = new MetricStore({ now: () => 0 });
    store.setUnits(Array.from({ length: 1_000 }, (_, k) => spec(`u${k}`)));
    const allocated: number[] = [];
    for (let r = 0; r < 8; r++) {
      for (let k = 0; k < 1_000; k++) store.recordSuccess(`u${k}`, success(0, r * 10_000 + k));
      const snapshot = await store.snapshot();
      // Every other round a scrape reads it while the next round lands.
      if (r % 2 === 0) for (const piece of snapshot.gzipPieces()) piece.done();
      allocated.push(store.slabsAllocated);
    }
    expect(allocated[0]).toBeGreaterThan(0);
    expect(allocated.slice(3)).toEqual(Array(5).fill(allocated[2]));
  });

  it('refuses to read a snapshot once a newer one replaced it and its last response finished', async () => {
    const store = new MetricStore({ now: () => 0 });
    store.setUnits([spec('a')]);
    store.recordSuccess('a', success(0, 1));
    const old = await store.snapshot();
    const response = old.pieces()[Symbol.iterator]();
    store.recordSuccess('a', success(0, 2));
    await store.snapshot();
    // A response is still reading it: readable.
    expect(Buffer.concat(old.chunks()).toString()).toMatch(/input_tokens\{[^}]*\} 1$/m);
    for (let next = response.next(); !next.done; next = response.next()) next.value.done();
    expect(() => old.chunks()).toThrow(expect.objectContaining({ code: 'FLASHBACK_ERR_SNAPSHOT_RELEASED' }));
    expect(() => old.gzipPieces()).toThrow(SnapshotReleasedError);
  });
});
