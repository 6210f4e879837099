import { createHash } from 'node:crypto';
import { FILTER_KEYS, type FilterKey } from './schema.js';
import type { Config, TargetConfig } from './config.js';

/** Label name of each API filter, as exported. */
export const FILTER_LABELS: Readonly<Record<FilterKey, string>> = Object.freeze({
  model: 'model',
  userId: 'user_id',
  apiKeyId: 'api_key_id',
  aiLlmId: 'ai_llm_id',
});

/** Label names and values in output order: an array, as a unit's labels are rendered in the order they are given. */
export type LabelPairs = readonly (readonly [name: string, value: string])[];

/**
 * One target × one combination of its filter values: one API request per tick.
 * Units are the grain of scheduling, staleness, sharding and the exporter's own metrics.
 */
export interface PollUnit {
  /** Identity across reloads: a unit whose whole definition is unchanged keeps its key. */
  readonly key: string;
  /** Human-readable name for logs and the landing page, e.g. `eng{model="gpt-4o"}`. */
  readonly id: string;
  readonly target: TargetConfig;
  /** The single filter value of each filtered key. */
  readonly filters: Readonly<Partial<Record<FilterKey, string>>>;
  /** `target` and the four filter labels: the labels of the exporter's per-unit metrics. */
  readonly unitLabels: LabelPairs;
  /** Every label of the unit's data series: unit labels, scope, window and the target's own. */
  readonly dataLabels: LabelPairs;
}

/** Which of n replicas polls which units (kube-state-metrics' --shard/--total-shards). */
export interface Sharding {
  readonly shard: number;
  readonly totalShards: number;
}

/** Expands every target's filter matrix into poll units, keeping only this shard's share. */
export function expandUnits(config: Config, sharding: Sharding = { shard: 0, totalShards: 1 }): PollUnit[] {
  const units: PollUnit[] = [];
  for (const target of config.targets) {
    const digest = definitionDigest(target);
    const pairs = targetPairs(target);
    for (const filters of filterCombinations(target)) {
      const unit = makeUnit(target, filters, digest, pairs);
      if (shardOf(unit.id, sharding.totalShards) === sharding.shard) units.push(unit);
    }
  }
  return units;
}

/** The number of poll units a target expands to: the product of its filter list lengths. */
export function unitCount(target: TargetConfig): number {
  return FILTER_KEYS.reduce((n, k) => n * Math.max(1, target.filters[k].length), 1);
}

/**
 * Series one unit publishes when every poll succeeds and the API sends only the documented
 * fields: tokens in/out, requests, the bucket timestamp, 8 summary statistics when enabled,
 * and the unit's up, last-success and poll-duration gauges. The store's golden test pins this.
 */
export function seriesPerUnit(target: TargetConfig): number {
  return 4 + (target.summary ? 8 : 0) + 3;
}

/** A stable shard for a unit id: the same on every replica, release and platform. */
export function shardOf(id: string, totalShards: number): number {
  if (totalShards <= 1) return 0;
  return createHash('sha256').update(id).digest().readUInt32BE(0) % totalShards;
}

function* filterCombinations(target: TargetConfig): Generator<Partial<Record<FilterKey, string>>> {
  const keys = FILTER_KEYS.filter((k) => target.filters[k].length > 0);
  const pick: Partial<Record<FilterKey, string>> = {};
  function* walk(i: number): Generator<Partial<Record<FilterKey, string>>> {
    if (i === keys.length) {
      yield { ...pick };
      return;
    }
    const key = keys[i]!;
    for (const value of target.filters[key]) {
      pick[key] = value;
      yield* walk(i + 1);
    }
  }
  yield* walk(0);
}

// A target's whole definition, in 22 characters: part of every unit key, so a unit whose
// target changed in any way is a new unit, while keys stay short however long its lists are.
function definitionDigest(target: TargetConfig): string {
  return createHash('sha256').update(JSON.stringify(target)).digest('base64url').slice(0, 22);
}

type Pair = readonly [name: string, value: string];

/** The label pairs every unit of a target shares, made once per target rather than per unit. */
interface TargetPairs {
  readonly target: Pair;
  /** scope, scope_id, window, bucket_size. */
  readonly scope: readonly Pair[];
  /** The target's own labels, sorted by name. */
  readonly own: readonly Pair[];
  /** Each filter label with an empty value, for the filters a unit does not set. */
  readonly unfiltered: Readonly<Record<FilterKey, Pair>>;
}

function targetPairs(target: TargetConfig): TargetPairs {
  const pair = (name: string, value: string): Pair => Object.freeze([name, value] as const);
  return {
    target: pair('target', target.name),
    scope: [pair('scope', target.scope), pair('scope_id', target.id ?? ''), pair('window', target.window), pair('bucket_size', target.timeBucketSize)],
    own: Object.entries(target.labels)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => pair(name, value)),
    unfiltered: Object.fromEntries(FILTER_KEYS.map((k) => [k, pair(FILTER_LABELS[k], '')])) as Record<FilterKey, Pair>,
  };
}

function makeUnit(target: TargetConfig, filters: Partial<Record<FilterKey, string>>, digest: string, pairs: TargetPairs): PollUnit {
  // Only the pairs of the filters this unit sets are its own: at ten thousand units, a copy of
  // every pair per unit was a fifth of the live heap.
  const filterPairs = FILTER_KEYS.map((k): Pair => {
    const value = filters[k];
    return value === undefined ? pairs.unfiltered[k] : Object.freeze([FILTER_LABELS[k], value] as const);
  });
  const unitLabels: Pair[] = [pairs.target, ...filterPairs];
  const dataLabels: Pair[] = [pairs.target, ...pairs.scope, ...filterPairs, ...pairs.own];
  const filterText = FILTER_KEYS.filter((k) => filters[k] !== undefined)
    .map((k) => `${FILTER_LABELS[k]}=${JSON.stringify(filters[k])}`)
    .join(',');
  const id = filterText === '' ? target.name : `${target.name}{${filterText}}`;
  return Object.freeze({
    key: `${id}#${digest}`,
    id,
    target,
    filters: Object.freeze(filters),
    unitLabels: Object.freeze(unitLabels),
    dataLabels: Object.freeze(dataLabels),
  });
}
