import { promisify } from 'node:util';
import { gzip as gzipCallback, constants as zlib } from 'node:zlib';
import { renderLabels, escapeLabelValue, sampleLine, type LabelPairs } from './exposition.js';
import {
  BUCKET_TIMESTAMP,
  FIELD_FAMILIES,
  LAST_SUCCESS,
  POLL_DURATION,
  POLL_ERRORS,
  TARGET_UP,
  WINDOW_STAT,
  extraFieldFamily,
  headerBytes,
  type FamilyDef,
} from './families.js';

const gzip = promisify(gzipCallback);

// Units are grouped into blocks of this many slots. A block keeps its units' text for one
// family as a single Buffer, so a change costs one block rebuild and a scrape is a list of
// a few hundred Buffers, never a walk over every series (kube-state-metrics' metrics_store).
const BLOCK_SIZE = 128;
// A rebuild yields to the event loop after this much work, so scrapes of a large store
// never stall polls or other requests for long.
const YIELD_AFTER_MS = 4;

/** What the store needs to know about a poll unit; it never sees the config itself. */
export interface UnitSpec {
  /** Identity: a spec with the same key is the same unit and keeps its data. */
  readonly key: string;
  /** Human-readable name for the landing page. */
  readonly id: string;
  /** Labels of the exporter's per-unit metrics. */
  readonly unitLabels: LabelPairs;
  /** Labels of the unit's data series. */
  readonly dataLabels: LabelPairs;
  readonly staleAfterMs: number;
}

/** The outcome of a successful poll, reduced to what gets published. */
export interface PollSuccess {
  /** Epoch ms when the poll finished. */
  readonly at: number;
  readonly durationSeconds: number;
  /** The bucket to publish: its start and its numeric fields; undefined for an empty series. */
  readonly bucket: { readonly ts: number; readonly fields: readonly (readonly [string, number])[] } | undefined;
  /** Summary statistics to publish, or undefined when the unit does not publish them. */
  readonly summary: readonly (readonly [string, number])[] | undefined;
}

export interface PollFailure {
  readonly at: number;
  readonly durationSeconds: number;
  readonly reason: string;
  readonly message: string;
}

/** A unit's state for the landing page. */
export interface UnitStatus {
  readonly id: string;
  readonly up: boolean | undefined;
  readonly lastAttemptAt: number | undefined;
  readonly lastSuccessAt: number | undefined;
  readonly durationSeconds: number | undefined;
  readonly lastError: string | undefined;
  readonly hasData: boolean;
}

/** The exposition text at one moment, as the Buffers to send in order. */
export interface Snapshot {
  readonly version: number;
  readonly chunks: readonly Buffer[];
  readonly byteLength: number;
  /** The same text gzip-compressed, computed once per snapshot on first use. */
  gzipped(): Promise<Buffer>;
}

class Block {
  buf: Buffer = Buffer.alloc(0);
  /** End offset of each slot's text in `buf`. */
  readonly ends = new Uint32Array(BLOCK_SIZE);
  /** Text that replaces a slot's text at the next rebuild. */
  readonly pending = new Map<number, string>();

  /** Whether a slot has text, counting changes not yet rebuilt. */
  has(i: number): boolean {
    const text = this.pending.get(i);
    return text === undefined ? this.ends[i]! > (i === 0 ? 0 : this.ends[i - 1]!) : text !== '';
  }

  /** Rebuilds `buf` with one allocation: kept slices are copied, changed text encoded in place. */
  rebuild(): void {
    const old = this.ends.slice();
    const startOf = (i: number) => (i === 0 ? 0 : old[i - 1]!);
    let total = 0;
    for (let i = 0; i < BLOCK_SIZE; i++) {
      const text = this.pending.get(i);
      total += text === undefined ? old[i]! - startOf(i) : Buffer.byteLength(text);
    }
    const next = Buffer.allocUnsafe(total);
    let offset = 0;
    for (let i = 0; i < BLOCK_SIZE; i++) {
      const text = this.pending.get(i);
      offset += text === undefined ? this.buf.copy(next, offset, startOf(i), old[i]!) : next.write(text, offset, 'utf8');
      this.ends[i] = offset;
    }
    this.buf = next;
    this.pending.clear();
  }
}

class Family {
  readonly def: FamilyDef;
  readonly header: Buffer;
  readonly blocks: (Block | undefined)[] = [];
  /** Slots with text: a family without any is left out of the output. */
  populated = 0;

  constructor(def: FamilyDef) {
    this.def = def;
    this.header = headerBytes(def);
  }

  /** Sets a slot's text; '' removes the slot's series from this family. */
  set(slot: number, text: string): void {
    const index = Math.floor(slot / BLOCK_SIZE);
    const block = this.blocks[index] ?? (text === '' ? undefined : (this.blocks[index] = new Block()));
    if (block === undefined) return;
    const had = block.has(slot % BLOCK_SIZE);
    if (!had && text === '') return;
    block.pending.set(slot % BLOCK_SIZE, text);
    if (had && text === '') this.populated--;
    else if (!had && text !== '') this.populated++;
  }
}

interface UnitState {
  readonly spec: UnitSpec;
  readonly slot: number;
  readonly unitLabels: string;
  readonly dataLabels: string;
  /** Families holding this unit's data series: cleared when data goes stale or is replaced. */
  dataFamilies: Family[];
  up: boolean | undefined;
  lastAttemptAt: number | undefined;
  lastSuccessAt: number | undefined;
  durationSeconds: number | undefined;
  lastError: string | undefined;
  readonly errors: Map<string, number>;
}

/**
 * The latest published values of every poll unit, kept as pre-rendered exposition text.
 * Polls write a unit's lines once when they land; scrapes concatenate cached blocks and
 * never wait for the API. Time comes from the injected clock, so staleness is testable.
 */
export class MetricStore {
  readonly #now: () => number;
  readonly #units = new Map<string, UnitState>();
  readonly #freeSlots: number[] = [];
  #nextSlot = 0;
  #attempted = 0;
  #version = 0;
  #snapshot: Snapshot | undefined;
  #building: Promise<Snapshot> | undefined;

  // Fixed families first, in a stable order; families for extra API fields follow, by name.
  readonly #fields = new Map<string, Family>(Object.entries(FIELD_FAMILIES).map(([field, def]) => [field, new Family(def)]));
  readonly #bucketTs = new Family(BUCKET_TIMESTAMP);
  readonly #extras = new Map<string, Family | null>();
  readonly #windowStat = new Family(WINDOW_STAT);
  readonly #up = new Family(TARGET_UP);
  readonly #lastSuccess = new Family(LAST_SUCCESS);
  readonly #duration = new Family(POLL_DURATION);
  readonly #errors = new Family(POLL_ERRORS);
  #order: Family[] = [];

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#reorder();
  }

  /**
   * Makes `specs` the set of units. Units whose key is unchanged keep their data;
   * removed units' series disappear at once; new units start empty.
   */
  setUnits(specs: readonly UnitSpec[]): void {
    const wanted = new Set(specs.map((s) => s.key));
    for (const [key, unit] of this.#units) {
      if (wanted.has(key)) continue;
      this.#clearData(unit);
      for (const family of [this.#up, this.#lastSuccess, this.#duration, this.#errors]) family.set(unit.slot, '');
      if (unit.lastAttemptAt !== undefined) this.#attempted--;
      this.#freeSlots.push(unit.slot);
      this.#units.delete(key);
    }
    for (const spec of specs) {
      if (this.#units.has(spec.key)) continue;
      this.#units.set(spec.key, {
        spec,
        slot: this.#freeSlots.pop() ?? this.#nextSlot++,
        unitLabels: renderLabels(spec.unitLabels),
        dataLabels: renderLabels(spec.dataLabels),
        dataFamilies: [],
        up: undefined,
        lastAttemptAt: undefined,
        lastSuccessAt: undefined,
        durationSeconds: undefined,
        lastError: undefined,
        errors: new Map(),
      });
    }
    this.#version++;
  }

  /** Publishes a successful poll: replaces the unit's data series and marks it up. */
  recordSuccess(key: string, result: PollSuccess): void {
    const unit = this.#units.get(key);
    if (unit === undefined) return; // removed by a reload while its poll was in flight
    const next = new Map<Family, string>();
    const add = (family: Family, line: string) => next.set(family, (next.get(family) ?? '') + line);
    if (result.bucket !== undefined) {
      add(this.#bucketTs, sampleLine(BUCKET_TIMESTAMP.name, unit.dataLabels, result.bucket.ts));
      for (const [field, value] of result.bucket.fields) {
        if (!Number.isFinite(value)) continue;
        const family = this.#fields.get(field) ?? this.#extraFamily(field);
        if (family !== undefined) add(family, sampleLine(family.def.name, unit.dataLabels, value));
      }
    }
    for (const [stat, value] of result.summary ?? []) {
      if (!Number.isFinite(value)) continue;
      add(this.#windowStat, sampleLine(WINDOW_STAT.name, `${unit.dataLabels},stat="${escapeLabelValue(stat)}"`, value));
    }
    for (const family of unit.dataFamilies) if (!next.has(family)) family.set(unit.slot, '');
    for (const [family, text] of next) family.set(unit.slot, text);
    unit.dataFamilies = [...next.keys()];

    this.#attempt(unit, result.at, result.durationSeconds);
    unit.up = true;
    unit.lastSuccessAt = result.at;
    unit.lastError = undefined;
    this.#up.set(unit.slot, sampleLine(TARGET_UP.name, unit.unitLabels, 1));
    this.#lastSuccess.set(unit.slot, sampleLine(LAST_SUCCESS.name, unit.unitLabels, result.at / 1000));
    this.#version++;
  }

  /** Records a failed poll: counts its reason and marks the unit down; its data stays until stale. */
  recordFailure(key: string, failure: PollFailure): void {
    const unit = this.#units.get(key);
    if (unit === undefined) return;
    this.#attempt(unit, failure.at, failure.durationSeconds);
    unit.up = false;
    unit.lastError = `${failure.reason}: ${failure.message}`;
    unit.errors.set(failure.reason, (unit.errors.get(failure.reason) ?? 0) + 1);
    let lines = '';
    for (const [reason, count] of unit.errors) {
      lines += sampleLine(POLL_ERRORS.name, `${unit.unitLabels},reason="${escapeLabelValue(reason)}"`, count);
    }
    this.#errors.set(unit.slot, lines);
    this.#up.set(unit.slot, sampleLine(TARGET_UP.name, unit.unitLabels, 0));
    this.#version++;
  }

  /** Drops the data series of units not refreshed within their staleAfter. */
  expire(): void {
    const now = this.#now();
    for (const unit of this.#units.values()) {
      if (unit.dataFamilies.length > 0 && now - (unit.lastSuccessAt ?? 0) >= unit.spec.staleAfterMs) {
        this.#clearData(unit);
        this.#version++;
      }
    }
  }

  /** Whether every unit has finished at least one poll attempt (the /-/ready condition). */
  get ready(): boolean {
    return this.#attempted === this.#units.size;
  }

  get unitCount(): number {
    return this.#units.size;
  }

  /** Every unit's state, in the order they were added. */
  statuses(): UnitStatus[] {
    this.expire();
    return [...this.#units.values()].map((u) => ({
      id: u.spec.id,
      up: u.up,
      lastAttemptAt: u.lastAttemptAt,
      lastSuccessAt: u.lastSuccessAt,
      durationSeconds: u.durationSeconds,
      lastError: u.lastError,
      hasData: u.dataFamilies.length > 0,
    }));
  }

  /**
   * The current exposition text. Unchanged since the last call: the same cached snapshot.
   * Changed: only the blocks that changed are rebuilt, yielding to the event loop as it goes;
   * concurrent callers share one rebuild.
   */
  snapshot(): Promise<Snapshot> {
    this.expire();
    if (this.#snapshot?.version === this.#version) return Promise.resolve(this.#snapshot);
    this.#building ??= this.#build().finally(() => {
      this.#building = undefined;
    });
    return this.#building;
  }

  async #build(): Promise<Snapshot> {
    const version = this.#version;
    const chunks: Buffer[] = [];
    let byteLength = 0;
    let sliceStart = performance.now();
    for (const family of this.#order) {
      if (family.populated === 0) continue;
      const familyChunks: Buffer[] = [family.header];
      for (const block of family.blocks) {
        if (block === undefined) continue;
        if (block.pending.size > 0) block.rebuild();
        if (block.buf.length > 0) familyChunks.push(block.buf);
        if (performance.now() - sliceStart > YIELD_AFTER_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
      }
      // A family emptied while this build yielded must not leave a bare header behind.
      if (familyChunks.length === 1) continue;
      for (const chunk of familyChunks) byteLength += chunk.length;
      chunks.push(...familyChunks);
    }
    let compressed: Promise<Buffer> | undefined;
    const snapshot: Snapshot = {
      version,
      chunks,
      byteLength,
      gzipped: () => (compressed ??= gzip(Buffer.concat(chunks, byteLength), { level: zlib.Z_BEST_SPEED })),
    };
    this.#snapshot = snapshot;
    return snapshot;
  }

  #attempt(unit: UnitState, at: number, durationSeconds: number): void {
    if (unit.lastAttemptAt === undefined) this.#attempted++;
    unit.lastAttemptAt = at;
    unit.durationSeconds = durationSeconds;
    this.#duration.set(unit.slot, sampleLine(POLL_DURATION.name, unit.unitLabels, durationSeconds));
  }

  #clearData(unit: UnitState): void {
    for (const family of unit.dataFamilies) family.set(unit.slot, '');
    unit.dataFamilies = [];
  }

  #extraFamily(field: string): Family | undefined {
    let family = this.#extras.get(field);
    if (family === undefined) {
      const def = extraFieldFamily(field);
      // Two fields may snake-case to one name (`cachedTokens`, `cached_tokens`): first wins.
      const clash = def !== undefined && [...this.#extras.values()].some((f) => f?.def.name === def.name);
      family = def === undefined || clash ? null : new Family(def);
      this.#extras.set(field, family);
      this.#reorder();
    }
    return family ?? undefined;
  }

  #reorder(): void {
    const extras = [...this.#extras.values()].filter((f): f is Family => f !== null).sort((a, b) => (a.def.name < b.def.name ? -1 : 1));
    this.#order = [...this.#fields.values(), this.#bucketTs, ...extras, this.#windowStat, this.#up, this.#lastSuccess, this.#duration, this.#errors];
  }
}
