// The fast path at scale: thousands of units, tens of thousands of series with hostile label
// values, served over HTTP by the exporter's handler. Its sample lines must be byte for byte
// prom-client's for the same data (order aside), before and after a round of changes; gzip must
// decompress to the plain text; promtool must have nothing to say; and a real Prometheus must
// ingest every sample. Timings are the benchmark's business (npm run bench), not the tests'.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHandler, listen } from '../src/http/server.js';
import { MetricStore, type PollSuccess, type UnitSpec } from '../src/store/store.js';
import {
  BUCKET_TIMESTAMP,
  FIELD_FAMILIES,
  LAST_SUCCESS,
  POLL_DURATION,
  POLL_ERRORS,
  TARGET_UP,
  WINDOW_STAT,
  extraFieldFamily,
  type FamilyDef,
} from '../src/store/families.js';
import { rawRequest } from './support/http.js';
import { sampleLines } from './support/exporter.js';

const UNITS = 1_500;

// Label values and statistic names that exercise every escape and encoding path.
const NASTY = [
  'plain',
  'with "quotes"',
  'back\\slash',
  'trailing\\',
  'new\nline',
  '\\n is not a newline',
  'ünïcødé ✓',
  '中文 🚀',
  '',
  '{braces}=,commas',
  'tab\there',
  `long ${'x'.repeat(400)}`,
];
const STATS = ['total', 'avg', 'stdDev', 'min', 'max', 'p10', 'p50', 'p90', 'p99.9', 'we"ird', 'new\nline', 'ü'];
// Values as the API may send them: integers, decimals, huge, tiny, negative, negative zero.
const VALUES = [0, 1, 42, 1234567, 0.5, 10.25, 1 / 3, -7, -0, 1e21, 123456789012345680000, 5e-324, 2 ** 53, 1.7976931348623157e308];

const dataNames = ['target', 'scope', 'scope_id', 'window', 'bucket_size', 'model', 'user_id', 'api_key_id', 'ai_llm_id', 'team'];
const unitNames = ['target', 'model', 'user_id', 'api_key_id', 'ai_llm_id'];

function unitSpec(i: number): UnitSpec {
  const pick = (n: number) => NASTY[(i * 7 + n) % NASTY.length]!;
  const unitLabels: [string, string][] = [['target', `t-${i % 17}`], ['model', pick(1)], ['user_id', `user-${i}`], ['api_key_id', i % 3 === 0 ? pick(2) : ''], ['ai_llm_id', '']];
  // Every other unit has a long team label, so some blocks exceed the 256 KiB render piece.
  const team = i % 2 === 0 ? NASTY.at(-1)! : pick(3);
  const dataLabels: [string, string][] = [
    ['target', `t-${i % 17}`],
    ['scope', 'workspace'],
    ['scope_id', pick(4)],
    ['window', '24h'],
    ['bucket_size', '1h'],
    ...unitLabels.slice(1),
    ['team', team],
  ];
  return { key: `unit-${i}`, id: `unit-${i}`, unitLabels, dataLabels, staleAfterMs: Number.MAX_SAFE_INTEGER };
}

function poll(i: number, round: number): PollSuccess {
  const v = (n: number) => VALUES[(i * 3 + n + round * 5) % VALUES.length]!;
  const statCount = 6 + ((i + round) % 7);
  return {
    at: 1_760_000_000_000 + i * 1000 + round,
    durationSeconds: 0.001 * ((i % 997) + 1) + round,
    // Every eleventh unit gets an empty series: no data series, and up 1.
    bucket: (i + round) % 11 === 0 ? undefined : { ts: 1_759_996_800 + 3600 * round, fields: [['tokensIn', v(0)], ['tokensOut', v(1)], ['requests', v(2)], ['cachedTokens', v(3)]] },
    summary: STATS.slice(0, statCount).map((s, n) => [s, v(n + 4)] as const),
  };
}

/**
 * The reference: prom-client gauges and counters set from the same polls, the way a
 * straightforward exporter would, with the store's family names and label order.
 */
class Reference {
  readonly registry = new Registry();
  readonly #fields = new Map<string, Gauge>();
  readonly #bucketTs = this.#gauge(BUCKET_TIMESTAMP.name, dataNames);
  readonly #stat = this.#gauge(WINDOW_STAT.name, [...dataNames, 'stat']);
  readonly #up = this.#gauge(TARGET_UP.name, unitNames);
  readonly #lastSuccess = this.#gauge(LAST_SUCCESS.name, unitNames);
  readonly #duration = this.#gauge(POLL_DURATION.name, unitNames);
  readonly #errors = new Counter({ name: POLL_ERRORS.name, help: 'h', labelNames: [...unitNames, 'reason'], registers: [this.registry] });
  /** What each unit currently publishes, to remove it again. */
  readonly #published = new Map<string, { data: Record<string, string>; own: Record<string, string>; fields: string[]; stats: string[]; reasons: string[] }>();

  #gauge(name: string, labelNames: string[]): Gauge {
    return new Gauge({ name, help: 'h', labelNames, registers: [this.registry] });
  }

  #field(field: string): Gauge {
    let gauge = this.#fields.get(field);
    if (gauge === undefined) {
      const name = FIELD_FAMILIES[field]?.name ?? (extraFieldFamily(field) as FamilyDef).name;
      this.#fields.set(field, (gauge = this.#gauge(name, dataNames)));
    }
    return gauge;
  }

  #clearData(key: string): void {
    const p = this.#published.get(key);
    if (p === undefined) return;
    for (const field of p.fields) this.#field(field).remove(p.data);
    this.#bucketTs.remove(p.data);
    for (const stat of p.stats) this.#stat.remove({ ...p.data, stat });
    p.fields = [];
    p.stats = [];
  }

  success(spec: UnitSpec, result: PollSuccess): void {
    this.#clearData(spec.key);
    const data = Object.fromEntries(spec.dataLabels);
    const own = Object.fromEntries(spec.unitLabels);
    const p = this.#published.get(spec.key) ?? { data, own, fields: [], stats: [], reasons: [] };
    this.#published.set(spec.key, p);
    if (result.bucket !== undefined) {
      this.#bucketTs.set(data, result.bucket.ts);
      for (const [field, value] of result.bucket.fields) this.#field(field).set(data, value);
      p.fields = result.bucket.fields.map(([f]) => f);
    }
    for (const [stat, value] of result.summary ?? []) this.#stat.set({ ...data, stat }, value);
    p.stats = (result.summary ?? []).map(([s]) => s);
    this.#up.set(own, 1);
    this.#lastSuccess.set(own, result.at / 1000);
    this.#duration.set(own, result.durationSeconds);
  }

  failure(spec: UnitSpec, reason: string, durationSeconds: number): void {
    const own = Object.fromEntries(spec.unitLabels);
    this.#up.set(own, 0);
    this.#duration.set(own, durationSeconds);
    this.#errors.inc({ ...own, reason });
    const p = this.#published.get(spec.key)!;
    if (!p.reasons.includes(reason)) p.reasons.push(reason);
  }

  remove(spec: UnitSpec): void {
    this.#clearData(spec.key);
    const p = this.#published.get(spec.key)!;
    for (const g of [this.#up, this.#lastSuccess, this.#duration]) g.remove(p.own);
    for (const reason of p.reasons) this.#errors.remove({ ...p.own, reason });
    this.#published.delete(spec.key);
  }
}

let store: MetricStore;
let reference: Reference;
let server: Server;
let url: string;
let specs: UnitSpec[];

async function scrape(gzip: boolean) {
  const res = await rawRequest(`${url}/metrics`, { headers: gzip ? { 'accept-encoding': 'gzip' } : {} });
  expect(res.status).toBe(200);
  expect(res.complete).toBe(true);
  expect(res.headers['content-encoding']).toBe(gzip ? 'gzip' : undefined);
  return res.body;
}

beforeAll(async () => {
  store = new MetricStore({ now: () => 1_760_000_000_000 });
  reference = new Reference();
  specs = Array.from({ length: UNITS }, (_, i) => unitSpec(i));
  store.setUnits(specs);
  specs.forEach((spec, i) => {
    const result = poll(i, 0);
    store.recordSuccess(spec.key, result);
    reference.success(spec, result);
    if (i % 13 === 0) {
      for (const reason of ['timeout', i % 2 === 0 ? 'http_5xx' : 'rate_limited']) {
        store.recordFailure(spec.key, { at: 0, durationSeconds: 2.5, reason, message: 'm' });
        reference.failure(spec, reason, 2.5);
      }
    }
  });
  // Only the store's series: no metrics of the exporter's own.
  const handler = createHandler({
    store,
    ownMetrics: async () => '',
    telemetryPath: '/metrics',
    version: 'test',
    log: pino({ level: 'silent' }),
    enableLifecycle: false,
    reload: async () => ({ ok: true }),
  });
  server = await listen(handler, { host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

describe(`/metrics with ${UNITS} units`, () => {
  it('has the sample lines prom-client renders for the same data, byte for byte', async () => {
    const ours = sampleLines((await scrape(false)).toString('utf8'));
    expect(ours.length).toBeGreaterThan(20_000);
    expect(ours).toEqual(sampleLines(await reference.registry.metrics()));
  });

  it('serves gzip that decompresses to exactly the plain text', async () => {
    const plain = await scrape(false);
    const zipped = await scrape(true);
    expect(zipped.length).toBeLessThan(plain.length / 5);
    expect(gunzipSync(zipped).equals(plain)).toBe(true);
  });

  it('passes promtool check metrics without a remark', async () => {
    const result = spawnSync('promtool', ['check', 'metrics'], { input: await scrape(false), encoding: 'utf8' });
    expect(result.error).toBeUndefined();
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('still matches prom-client after a round of new polls, failures, removals and additions', async () => {
    const round = 1;
    // A third of the units poll again, some fail, a tenth go away, and new ones arrive.
    specs.forEach((spec, i) => {
      if (i % 3 !== 0) return;
      const result = poll(i, round);
      store.recordSuccess(spec.key, result);
      reference.success(spec, result);
      if (i % 5 === 0) {
        store.recordFailure(spec.key, { at: 0, durationSeconds: 9, reason: 'network', message: 'm' });
        reference.failure(spec, 'network', 9);
      }
    });
    const removed = specs.filter((_, i) => i % 10 === 7);
    for (const spec of removed) reference.remove(spec);
    const added = Array.from({ length: 200 }, (_, i) => unitSpec(UNITS + i));
    specs = [...specs.filter((_, i) => i % 10 !== 7), ...added];
    store.setUnits(specs);
    added.forEach((spec, i) => {
      const result = poll(UNITS + i, round);
      store.recordSuccess(spec.key, result);
      reference.success(spec, result);
    });

    const plain = await scrape(false);
    expect(sampleLines(plain.toString('utf8'))).toEqual(sampleLines(await reference.registry.metrics()));
    expect(gunzipSync(await scrape(true)).equals(plain)).toBe(true);
  });

  it('is ingested by a real Prometheus, every sample of it', async () => {
    const expected = sampleLines((await scrape(false)).toString('utf8')).length;
    const prometheus = await startPrometheus(url.replace('http://', ''));
    try {
      const query = async (promql: string) => {
        const res = await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
        const body = (await res.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
        return body.data.result;
      };
      let scraped: number | undefined;
      for (const end = Date.now() + 20_000; Date.now() < end; await new Promise((r) => setTimeout(r, 250))) {
        const up = await query('up{job="scale"}').catch(() => []);
        if (up[0]?.value[1] === '1') {
          scraped = Number((await query('scrape_samples_scraped{job="scale"}'))[0]?.value[1]);
          break;
        }
      }
      expect(scraped, 'Prometheus never scraped the exporter successfully').toBe(expected);
      const stored = await query('count({job="scale",__name__=~"flashback_.+"})');
      expect(Number(stored[0]?.value[1])).toBe(expected);
      // A hostile label value and a huge value come back as they were sent.
      const weird = await query('flashback_private_chat_window_stat{stat="new\\nline",user_id="user-5"}');
      expect(weird).toHaveLength(1);
      expect(weird[0]!.metric.model).toBe(unitSpec(5).unitLabels[1]![1]);
      expect(weird[0]!.metric.team).toBe(unitSpec(5).dataLabels[9]![1]);
    } finally {
      await prometheus.stop();
    }
  });
});

describe('staleness with many units', () => {
  it('drops exactly the data of the units whose last success is older than their staleAfter, as the clock moves', async () => {
    let now = 0;
    const stale = new MetricStore({ now: () => now });
    const units = Array.from({ length: 600 }, (_, i) => ({ ...unitSpec(i), staleAfterMs: 1_000 * (1 + (i % 7)) }));
    stale.setUnits(units);
    const lastSuccess = new Map<string, number>();
    const succeed = (i: number) => {
      stale.recordSuccess(units[i]!.key, { ...poll(i, 0), at: now, bucket: { ts: 1, fields: [['tokensIn', i]] } });
      lastSuccess.set(units[i]!.key, now);
    };
    units.forEach((_, i) => succeed(i));
    for (let step = 1; step <= 40; step++) {
      now += 250;
      // Some units are polled again between scrapes, after the store has computed when the
      // next unit goes stale.
      for (let i = step; i < units.length; i += 9) succeed(i);
      const text = Buffer.concat((await stale.snapshot()).chunks()).toString('utf8');
      const withData = new Set([...text.matchAll(/^flashback_private_chat_input_tokens\{.*user_id="(user-\d+)".*\} \d+$/gm)].map((m) => m[1]));
      const expected = new Set(units.filter((u) => now - lastSuccess.get(u.key)! < u.staleAfterMs).map((u) => u.unitLabels[2]![1]));
      expect(withData).toEqual(expected);
    }
  });
});

/** A throwaway Prometheus scraping `target` (host:port) every second. */
async function startPrometheus(target: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'flashback-scale-'));
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: scale\n    static_configs:\n      - targets: ['${target}']\n`,
  );
  const port = await freePort();
  const child: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  for (const end = Date.now() + 15_000; ; await new Promise((r) => setTimeout(r, 100))) {
    if (child.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
    if (Date.now() > end) throw new Error(`prometheus did not become ready: ${stderr}`);
    if ((await fetch(`${url}/-/ready`).catch(() => undefined))?.ok) break;
  }
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
