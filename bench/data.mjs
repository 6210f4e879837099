// The data every benchmark variant publishes: deterministic poll units and poll results, so the
// prom-client registry (A), the exporter's store (B) and the static buffer (C) hold the same series.
import { Counter, Gauge } from 'prom-client';
import {
  BUCKET_TIMESTAMP,
  FIELD_FAMILIES,
  LAST_SUCCESS,
  POLL_DURATION,
  POLL_ERRORS,
  TARGET_UP,
  WINDOW_STAT,
} from '../dist/store/families.js';

/** Series one unit publishes: 3 bucket fields, the bucket ts, 8 summary stats, up, last success, duration. */
export const SERIES_PER_UNIT = 15;

const MODELS = ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4', 'claude-opus-4', 'gemini-2.5-pro', 'llama-3.3-70b', 'mistral-large', 'o3'];
const STATS = ['total', 'avg', 'stdDev', 'min', 'max', 'p10', 'p50', 'p90'];
const TEAMS = ['platform', 'data "lake"', 'ml\\infra', 'équipe-paris', 'night\nshift'];

/** A small seeded PRNG (mulberry32), so every process generates identical data. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Units enough for about `series` series: each is one workspace target × one model × one user,
 * with a team label; the values look like the API's (integers, a few decimals, epoch seconds).
 */
export function generate(series, seed = 42) {
  const random = prng(seed);
  const int = (max) => Math.floor(random() * max);
  const count = Math.max(1, Math.round(series / SERIES_PER_UNIT));
  const units = [];
  // A fixed clock, so every process renders the same last-success values; the data never goes stale.
  const now = 1_760_000_000_000;
  for (let i = 0; i < count; i++) {
    const target = `ws-${String(Math.floor(i / 400)).padStart(3, '0')}`;
    const model = MODELS[i % MODELS.length];
    const userId = `user-${String(i).padStart(6, '0')}@example.com`;
    const unitLabels = [['target', target], ['model', model], ['user_id', userId], ['api_key_id', ''], ['ai_llm_id', '']];
    const dataLabels = [
      ['target', target],
      ['scope', 'workspace'],
      ['scope_id', `wsid-${Math.floor(i / 400)}`],
      ['window', '24h'],
      ['bucket_size', '1h'],
      ...unitLabels.slice(1),
      ['team', TEAMS[i % TEAMS.length]],
    ];
    const tokensIn = int(5_000_000);
    const samples = Array.from({ length: 24 }, () => int(200_000));
    const total = samples.reduce((a, b) => a + b, 0);
    const avg = total / samples.length;
    const stdDev = Math.sqrt(samples.reduce((a, b) => a + (b - avg) ** 2, 0) / samples.length);
    const sorted = [...samples].sort((a, b) => a - b);
    const stats = [total, avg, stdDev, sorted[0], sorted[23], sorted[2], sorted[12], sorted[21]];
    units.push({
      spec: { key: `unit-${i}`, id: `${target}{model="${model}",user_id="${userId}"}`, unitLabels, dataLabels, staleAfterMs: Number.MAX_SAFE_INTEGER },
      result: {
        at: now - int(60_000),
        durationSeconds: Math.round((0.02 + random() * 0.5) * 1e6) / 1e6,
        bucket: { ts: 1_759_996_800 + 3600 * int(2), fields: [['tokensIn', tokensIn], ['tokensOut', int(tokensIn / 3)], ['requests', int(5_000)]] },
        summary: STATS.map((s, j) => [s, stats[j]]),
      },
    });
  }
  return units;
}

/** Fills a MetricStore (the exporter's own module) with the units' latest polls. */
export function fillStore(store, units) {
  store.setUnits(units.map((u) => u.spec));
  for (const u of units) store.recordSuccess(u.spec.key, u.result);
}

/**
 * Registers prom-client gauges for the same families, with the same help texts and label order,
 * on `registry`, and sets them from the units: what a straightforward prom-client exporter does.
 */
export function fillRegistry(registry, units) {
  const dataNames = units[0].spec.dataLabels.map(([k]) => k);
  const unitNames = units[0].spec.unitLabels.map(([k]) => k);
  const gauge = (def, labelNames) => new Gauge({ name: def.name, help: def.help, labelNames, registers: [registry] });
  const fields = Object.fromEntries(Object.entries(FIELD_FAMILIES).map(([field, def]) => [field, gauge(def, dataNames)]));
  const bucketTs = gauge(BUCKET_TIMESTAMP, dataNames);
  const windowStat = gauge(WINDOW_STAT, [...dataNames, 'stat']);
  const up = gauge(TARGET_UP, unitNames);
  const lastSuccess = gauge(LAST_SUCCESS, unitNames);
  const duration = gauge(POLL_DURATION, unitNames);
  // Registered (as the exporter's family is) but empty: every poll in the data succeeded.
  new Counter({ name: POLL_ERRORS.name, help: POLL_ERRORS.help, labelNames: [...unitNames, 'reason'], registers: [registry] });
  for (const { spec, result } of units) {
    const data = Object.fromEntries(spec.dataLabels);
    const own = Object.fromEntries(spec.unitLabels);
    bucketTs.set(data, result.bucket.ts);
    for (const [field, value] of result.bucket.fields) fields[field].set(data, value);
    for (const [stat, value] of result.summary) windowStat.set({ ...data, stat }, value);
    up.set(own, 1);
    lastSuccess.set(own, result.at / 1000);
    duration.set(own, result.durationSeconds);
  }
}
