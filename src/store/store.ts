import { gzipSync, constants as zlib } from 'node:zlib';
import { renderLabels, escapeLabelValue, type LabelPairs } from './exposition.js';
import { TurnBudget } from '../loop/turns.js';
import { BLOCK_SIZE, Block, Scratch, compressView, holdView, partLength, releaseView, renderPart, type FamilyText, type Part } from './block.js';
import { MemberPieces, Readers, pieces, type Piece } from './pieces.js';
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
  type DroppedField,
  type FieldDropReason,
  type FamilyDef,
} from './families.js';

// How the store keeps the exposition (kube-state-metrics' metrics_store, made compact):
// - Units are grouped into blocks of BLOCK_SIZE slots; per metric family a block holds its
//   units' lines, and is rebuilt only when one of them changes.
// - A block keeps each line without its label set: the label set of a unit is the same on all
//   of its lines, so it is kept once per unit, and a line is stored as its tail (`} 42\n`,
//   `,stat="p50"} 42\n`): a tenth of the plain text or less.
// - A block also keeps its rendered text as one gzip member. Members concatenated are one gzip
//   file (RFC 1952 §2.2), so a gzip scrape, what Prometheus asks for, sends cached bytes only.
// - A plain-text scrape renders the blocks again, label sets copied in front of tails, into
//   Buffers reused from one scrape to the next.
// - A poll's values wait in their block's arrays, as numbers, until the block is rebuilt: with
//   10,000 units polled, whatever a poll allocated and kept until then was promoted and swept
//   by mark-compacts, whose pauses were the event loop's longest.
// After a change, the snapshot is rebuilt this much later in the background (unless a scrape
// asks first), so a scrape seldom waits for a rebuild, and changed text is not held as strings
// until someone scrapes.
const BUILD_DELAY_MS = 1_000;
// Fastest compression: the text is so repetitive that higher levels gain only a few percent.
// For a family's header, made once; blocks' members come from the store's MemberWriter. An
// output chunk under 4 KiB comes from Buffer's shared pool.
const GZIP_OPTIONS = { level: zlib.Z_BEST_SPEED, chunkSize: 4095 };

/**
 * gzip-compresses `text` into a Buffer of its own: zlib's result is a view of a 64 KiB output
 * buffer, which a cached member would otherwise keep alive however small it is.
 */
function compress(text: Buffer): Buffer {
  const out = gzipSync(text, GZIP_OPTIONS);
  const member = Buffer.allocUnsafeSlow(out.length);
  out.copy(member);
  return member;
}

// The API decides the statistic names; a misbehaving one must not grow the cache without bound.
const EXTRA_LABELS_MAX = 10_000;
// The API decides which extra fields a bucket has, too: one that sends ever-changing names must
// not grow the families, the series or the memory without bound. Far more than it documents.
const EXTRA_FAMILIES_MAX = 32;
// Dropped field names are remembered so that a poll does not judge them again, up to this many.
const DROPPED_FIELDS_MAX = 1_000;

export type { Piece } from './pieces.js';
export { SnapshotReleasedError } from './pieces.js';

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

/** The outcome of a failed poll: its reason is a label value of flashback_exporter_poll_errors_total. */
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

/**
 * The exposition text at one moment. Its bytes are shared with the store's blocks and are
 * reused once it is released: after a newer snapshot replaced it and its last reader (an
 * iteration of its pieces, or a piece not yet `done`) finished. Read after that, it throws
 * SnapshotReleasedError (FLASHBACK_ERR_SNAPSHOT_RELEASED): take `store.snapshot()` again, and
 * keep a piece's bytes no longer than until its `done`.
 */
export interface Snapshot {
  readonly version: number;
  /** Bytes of the plain text. */
  readonly byteLength: number;
  /**
   * Bytes of its gzip members together: blocks' text compressed apart, whose concatenation is
   * one gzip file (RFC 1952 §2.2) that every reader, Prometheus included, decodes as one stream.
   */
  readonly gzipLength: number;
  /** The plain text, rendered anew into a Buffer of its own on each call (for --once and tests). */
  chunks(): readonly Buffer[];
  /**
   * The plain text in pieces of up to 256 KiB, each rendered when taken into a Buffer that is
   * reused: call `done` once the piece has been written out (or will not be).
   */
  pieces(): Iterable<Piece>;
  /**
   * The gzip members, copied together into pieces of up to 256 KiB, each made once per snapshot
   * when a gzip scrape first needs it: later scrapes of the snapshot copy nothing.
   */
  gzipPieces(): Iterable<Piece>;
}

class Family implements FamilyText {
  readonly def: FamilyDef;
  /** Whose label set opens this family's lines: the data series' or the unit's own. */
  readonly labels: 'data' | 'unit';
  readonly header: Buffer;
  readonly headerMember: Buffer;
  readonly open: Buffer;
  readonly bare: Buffer;
  readonly blocks: (Block | undefined)[] = [];
  /** The family's header as a part of a snapshot. */
  readonly headerPart: Part = { family: this, view: undefined };
  /** Slots with lines: a family without any is left out of the output. */
  populated = 0;

  readonly #scratch: Scratch;

  constructor(def: FamilyDef, labels: 'data' | 'unit', scratch: Scratch) {
    this.def = def;
    this.labels = labels;
    this.#scratch = scratch;
    this.header = headerBytes(def);
    this.headerMember = compress(this.header);
    this.open = Buffer.from(`${def.name}{`);
    this.bare = Buffer.from(def.name);
  }

  /** The poll that last put a line here (see MetricStore.recordSuccess). */
  stamp = 0;

  /** Adds a line to a slot's lines at the next rebuild; `first` replaces the lines it had. */
  put(slot: number, extra: string, value: number, first: boolean): void {
    const index = Math.floor(slot / BLOCK_SIZE);
    const i = slot % BLOCK_SIZE;
    const block = (this.blocks[index] ??= new Block());
    if (first && !block.has(i)) this.populated++;
    (first ? block.reset(i, this.#scratch) : block.changes!).add(i, extra, value);
  }

  /** Removes a slot's series from this family. */
  clear(slot: number): void {
    const block = this.blocks[Math.floor(slot / BLOCK_SIZE)];
    const i = slot % BLOCK_SIZE;
    if (block === undefined || !block.has(i)) return;
    block.reset(i, this.#scratch);
    this.populated--;
  }
}

interface UnitState {
  readonly spec: UnitSpec;
  readonly slot: number;
  /**
   * The label sets, rendered: the unit's own series', and its data series'. Rendered when the
   * unit first publishes (see `labelsOf`), so adding ten thousand units does not hold the event
   * loop for the escaping of all their labels at once.
   */
  unitLabels: Buffer | undefined;
  dataLabels: Buffer | undefined;
  /** Families holding this unit's data series: cleared when data goes stale or is replaced. */
  dataFamilies: Family[];
  up: boolean | undefined;
  /**
   * Epoch ms and seconds, NaN until the first poll (or success): never undefined, so that V8
   * keeps each field a number updated in place. A field that has held undefined holds any value,
   * and every poll's new time there was a fresh heap number, kept from an object that has long
   * been in old space: promoted, 10,000 units times three of them in every round.
   */
  lastAttemptAt: number;
  lastSuccessAt: number;
  durationSeconds: number;
  lastError: string | undefined;
  errors: Map<string, number> | undefined;
}

const orUndefined = (value: number) => (Number.isNaN(value) ? undefined : value);

/** A unit's rendered label set for its data series or its own, rendered on first use. */
function labelsOf(unit: UnitState, which: 'data' | 'unit'): Buffer {
  if (which === 'data') return (unit.dataLabels ??= Buffer.from(renderLabels(unit.spec.dataLabels)));
  return (unit.unitLabels ??= Buffer.from(renderLabels(unit.spec.unitLabels)));
}

/**
 * The latest published values of every poll unit, kept as pre-rendered exposition text.
 * Polls write a unit's lines once when they land; scrapes send cached blocks and never wait
 * for the API. Time comes from the injected clock, so staleness is testable.
 */
export class MetricStore {
  readonly #now: () => number;
  readonly #turns: TurnBudget;
  readonly #onFieldDropped: (dropped: DroppedField) => void;
  readonly #units = new Map<string, UnitState>();
  /** The unit in each slot, for the label sets of its lines. */
  readonly #bySlot: (UnitState | undefined)[] = [];
  readonly #freeSlots: number[] = [];
  #nextSlot = 0;
  #attempted = 0;
  #version = 0;
  #snapshot: Snapshot | undefined;
  #building: Promise<Snapshot> | undefined;
  #buildTimer: NodeJS.Timeout | undefined;
  /** No unit's data goes stale before this (epoch ms). */
  #nextExpiry = Number.POSITIVE_INFINITY;
  /** Scratch space of block rebuilds, and the pool of Buffers that text is rendered into. */
  readonly #work = new Scratch();
  /** The current snapshot's readers: it is retired when a newer snapshot replaces it. */
  #readers: Readers | undefined;
  /** `,stat="p50"` for each statistic name seen, so a poll does not escape the same names again. */
  readonly #extraLabels = { stat: new Map<string, string>(), reason: new Map<string, string>() };
  /** Polls recorded: each marks the families it puts lines in with its number. */
  #polls = 0;
  /** The data families the poll being recorded has put lines in, the first `#touched` of them. */
  readonly #touchedFamilies: Family[] = [];
  #touched = 0;

  // Fixed families first, in a stable order; families for extra API fields follow, by name.
  readonly #fields = new Map<string, Family>(Object.entries(FIELD_FAMILIES).map(([field, def]) => [field, new Family(def, 'data', this.#work)]));
  readonly #bucketTs = new Family(BUCKET_TIMESTAMP, 'data', this.#work);
  readonly #extras = new Map<string, Family>();
  /** Extra fields whose name can never be published. */
  readonly #dropped = new Set<string>();
  /** Extra fields dropped for want of room or of a name: judged again once an extra family is freed. */
  readonly #waiting = new Map<string, FieldDropReason>();
  /**
   * Fields that waited, until judged again: one dropped again for the same reason is not
   * reported again, as the operator has heard of it and nothing changed for it.
   */
  #rejudged = new Map<string, FieldDropReason>();
  readonly #windowStat = new Family(WINDOW_STAT, 'data', this.#work);
  readonly #up = new Family(TARGET_UP, 'unit', this.#work);
  readonly #lastSuccess = new Family(LAST_SUCCESS, 'unit', this.#work);
  readonly #duration = new Family(POLL_DURATION, 'unit', this.#work);
  readonly #errors = new Family(POLL_ERRORS, 'unit', this.#work);
  #order: Family[] = [];

  /**
   * `onFieldDropped` hears of each numeric field the API added that gets no metric, once; again
   * only when it is judged again (after an extra family is freed, or 1,000 other dropped names).
   */
  constructor(options: { now?: () => number; onFieldDropped?: (dropped: DroppedField) => void; turns?: TurnBudget } = {}) {
    this.#now = options.now ?? Date.now;
    // A rebuild yields once the turn's share is used, by it or by the scrapes and ticks beside it.
    this.#turns = options.turns ?? new TurnBudget();
    this.#onFieldDropped = options.onFieldDropped ?? (() => {});
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
      for (const family of [this.#up, this.#lastSuccess, this.#duration, this.#errors]) family.clear(unit.slot);
      if (!Number.isNaN(unit.lastAttemptAt)) this.#attempted--;
      this.#freeSlots.push(unit.slot);
      this.#bySlot[unit.slot] = undefined;
      this.#units.delete(key);
    }
    for (const spec of specs) {
      if (this.#units.has(spec.key)) continue;
      const unit: UnitState = {
        spec,
        slot: this.#freeSlots.pop() ?? this.#nextSlot++,
        unitLabels: undefined,
        dataLabels: undefined,
        dataFamilies: [],
        up: undefined,
        lastAttemptAt: Number.NaN,
        lastSuccessAt: Number.NaN,
        durationSeconds: Number.NaN,
        lastError: undefined,
        errors: undefined,
      };
      this.#units.set(spec.key, unit);
      this.#bySlot[unit.slot] = unit;
    }
    this.#changed();
  }

  /** Publishes a successful poll: replaces the unit's data series and marks it up. */
  recordSuccess(key: string, result: PollSuccess): void {
    const unit = this.#units.get(key);
    if (unit === undefined) return; // removed by a reload while its poll was in flight
    // Every poll of every unit comes through here, so it allocates nothing that outlives it:
    // values go into the blocks' arrays, and the families it touched are marked with its stamp.
    const poll = ++this.#polls;
    this.#touched = 0;
    if (result.bucket !== undefined) {
      this.#putData(unit, poll, this.#bucketTs, '', result.bucket.ts);
      for (const [field, value] of result.bucket.fields) {
        if (!Number.isFinite(value)) continue;
        const family = this.#fields.get(field) ?? this.#extraFamily(field);
        if (family !== undefined) this.#putData(unit, poll, family, '', value);
      }
    }
    for (const [stat, value] of result.summary ?? []) {
      if (!Number.isFinite(value)) continue;
      this.#putData(unit, poll, this.#windowStat, this.#extraLabel('stat', stat), value);
    }
    let same = unit.dataFamilies.length === this.#touched;
    for (const family of unit.dataFamilies) {
      if (family.stamp === poll) continue;
      family.clear(unit.slot);
      same = false;
    }
    // Nearly always the same families as the last poll's: the list is only replaced when not.
    if (!same) unit.dataFamilies = this.#touchedFamilies.slice(0, this.#touched);

    this.#attempt(unit, result.at, result.durationSeconds);
    unit.up = true;
    unit.lastSuccessAt = result.at;
    if (unit.dataFamilies.length > 0) this.#nextExpiry = Math.min(this.#nextExpiry, result.at + unit.spec.staleAfterMs);
    unit.lastError = undefined;
    this.#up.put(unit.slot, '', 1, true);
    this.#lastSuccess.put(unit.slot, '', result.at / 1000, true);
    this.#changed();
  }

  /** Adds a data line of a poll's to a family, noting the family the first time. */
  #putData(unit: UnitState, poll: number, family: Family, extra: string, value: number): void {
    const first = family.stamp !== poll;
    if (first) {
      family.stamp = poll;
      this.#touchedFamilies[this.#touched++] = family;
    }
    family.put(unit.slot, extra, value, first);
  }

  /** Records a failed poll: counts its reason and marks the unit down; its data stays until stale. */
  recordFailure(key: string, failure: PollFailure): void {
    const unit = this.#units.get(key);
    if (unit === undefined) return;
    this.#attempt(unit, failure.at, failure.durationSeconds);
    unit.up = false;
    unit.lastError = `${failure.reason}: ${failure.message}`;
    unit.errors ??= new Map();
    unit.errors.set(failure.reason, (unit.errors.get(failure.reason) ?? 0) + 1);
    let first = true;
    for (const [reason, count] of unit.errors) {
      this.#errors.put(unit.slot, this.#extraLabel('reason', reason), count, first);
      first = false;
    }
    this.#up.put(unit.slot, '', 0, true);
    this.#changed();
  }

  /** Drops the data series of units not refreshed within their staleAfter. */
  expire(): void {
    const now = this.#now();
    // Every scrape asks; only walk the units when one of them may have gone stale.
    if (now < this.#nextExpiry) return;
    let next = Number.POSITIVE_INFINITY;
    for (const unit of this.#units.values()) {
      if (unit.dataFamilies.length === 0) continue;
      // A unit with data has had a success.
      const expiry = unit.lastSuccessAt + unit.spec.staleAfterMs;
      if (now >= expiry) {
        this.#clearData(unit);
        this.#changed();
      } else {
        next = Math.min(next, expiry);
      }
    }
    this.#nextExpiry = next;
  }

  /** Whether every unit has finished at least one poll attempt (the /-/ready condition). */
  get ready(): boolean {
    return this.#attempted === this.#units.size;
  }

  /** Slabs that block views have been carved from so far: flat once rounds reuse released ones (for tests and the benchmark). */
  get slabsAllocated(): number {
    return this.#work.slabs.allocated;
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
      lastAttemptAt: orUndefined(u.lastAttemptAt),
      lastSuccessAt: orUndefined(u.lastSuccessAt),
      durationSeconds: orUndefined(u.durationSeconds),
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
    this.#freeUnusedExtras();
    const parts: Part[] = [];
    const rebuilt: Part[] = [];
    for (const family of this.#order) {
      if (family.populated === 0) continue;
      const start = parts.length;
      parts.push(family.headerPart);
      for (let index = 0; index < family.blocks.length; index++) {
        const block = family.blocks[index];
        if (block === undefined) continue;
        if (block.changes !== undefined) {
          const first = index * BLOCK_SIZE;
          block.rebuild(
            family,
            (i) => {
              const unit = this.#bySlot[first + i]!;
              return labelsOf(unit, family.labels);
            },
            this.#work,
          );
          if (block.view.length > 0) rebuilt.push(block.part(family));
        }
        if (block.view.length > 0) parts.push(block.part(family));
        if (this.#turns.spent()) await this.#turns.next();
      }
      // A family emptied while this build yielded must not leave a bare header behind.
      if (parts.length === start + 1) parts.length = start;
    }
    for (const { family, view } of rebuilt) await compressView(view!, family, this.#work);
    const members = parts.map((part) => (part.view === undefined ? part.family.headerMember : part.view.member));
    const byteLength = parts.reduce((n, part) => n + partLength(part), 0);
    const gzipLength = members.reduce((n, m) => n + m.length, 0);
    // The snapshot holds its views until it is released (see Readers), so that their bytes are
    // carved again by later rebuilds, not left for a mark-compact to find.
    for (const part of parts) if (part.view !== undefined) holdView(part.view);
    const work = this.#work;
    const readers = new Readers(() => {
      for (const part of parts) if (part.view !== undefined) releaseView(part.view, work.slabs);
      gzipPieces.free();
    });
    const gzipPieces = new MemberPieces(members, work.pieces, readers);
    const snapshot: Snapshot = {
      version,
      byteLength,
      gzipLength,
      chunks() {
        readers.check();
        const text = Buffer.allocUnsafe(byteLength);
        let offset = 0;
        for (const part of parts) offset = renderPart(part, text, offset);
        return [text];
      },
      pieces: () => pieces(parts, work.pieces, readers),
      gzipPieces: () => gzipPieces.pieces(),
    };
    this.#snapshot = snapshot;
    this.#readers?.retire();
    this.#readers = readers;
    return snapshot;
  }

  /** Marks the text changed, and schedules a rebuild in the background. */
  #changed(): void {
    this.#version++;
    this.#buildTimer ??= setTimeout(() => {
      this.#buildTimer = undefined;
      void this.snapshot();
    }, BUILD_DELAY_MS).unref();
  }

  /** `,name="value"`, escaped: the label a line adds to its unit's label set. */
  #extraLabel(name: 'stat' | 'reason', value: string): string {
    const cache = this.#extraLabels[name];
    let text = cache.get(value);
    if (text === undefined) {
      text = `,${name}="${escapeLabelValue(value)}"`;
      if (cache.size >= EXTRA_LABELS_MAX) cache.clear();
      cache.set(value, text);
    }
    return text;
  }

  #attempt(unit: UnitState, at: number, durationSeconds: number): void {
    if (Number.isNaN(unit.lastAttemptAt)) this.#attempted++;
    unit.lastAttemptAt = at;
    unit.durationSeconds = durationSeconds;
    this.#duration.put(unit.slot, '', durationSeconds, true);
  }

  #clearData(unit: UnitState): void {
    for (const family of unit.dataFamilies) family.clear(unit.slot);
    unit.dataFamilies = [];
  }

  #extraFamily(field: string): Family | undefined {
    const family = this.#extras.get(field);
    if (family !== undefined || this.#dropped.has(field) || this.#waiting.has(field)) return family;
    const def = extraFieldFamily(field);
    if ('reason' in def) return this.#drop(def, false);
    // Two fields may snake-case to one name (`cachedTokens`, `cached_tokens`): first wins.
    if ([...this.#extras.values()].some((f) => f.def.name === def.name)) {
      return this.#drop({ field, metric: def.name, reason: 'name_taken', why: 'is the metric of another field the API added' }, true);
    }
    if (this.#extras.size >= EXTRA_FAMILIES_MAX && !this.#freeUnusedExtras()) {
      return this.#drop({ field, metric: def.name, reason: 'too_many_fields', why: `would be more than ${EXTRA_FAMILIES_MAX} extra metrics` }, true);
    }
    this.#rejudged.delete(field);
    const added = new Family(def, 'data', this.#work);
    this.#extras.set(field, added);
    this.#reorder();
    return added;
  }

  /** Remembers a field that gets no family, for good or until one is freed (`waits`), and reports it. */
  #drop(dropped: DroppedField, waits: boolean): undefined {
    const { field, reason } = dropped;
    if (waits) {
      if (this.#waiting.size >= DROPPED_FIELDS_MAX) this.#waiting.clear();
      this.#waiting.set(field, reason);
    } else {
      if (this.#dropped.size >= DROPPED_FIELDS_MAX) this.#dropped.clear();
      this.#dropped.add(field);
    }
    const before = this.#rejudged.get(field);
    this.#rejudged.delete(field);
    if (before !== reason) this.#onFieldDropped(dropped);
    return undefined;
  }

  /**
   * Forgets the extra families no unit has lines in any more (their fields went away, or their
   * units went stale or were removed); true when there were any. A family that comes back is
   * made anew.
   */
  #freeUnusedExtras(): boolean {
    const size = this.#extras.size;
    for (const [field, family] of this.#extras) if (family.populated === 0) this.#extras.delete(field);
    if (this.#extras.size === size) return false;
    // Room, or a name, for the fields that waited for one.
    for (const [field, reason] of this.#waiting) this.#rejudged.set(field, reason);
    if (this.#rejudged.size > DROPPED_FIELDS_MAX) this.#rejudged = new Map(this.#waiting);
    this.#waiting.clear();
    this.#reorder();
    return true;
  }

  #reorder(): void {
    const extras = [...this.#extras.values()].sort((a, b) => (a.def.name < b.def.name ? -1 : 1));
    this.#order = [...this.#fields.values(), this.#bucketTs, ...extras, this.#windowStat, this.#up, this.#lastSuccess, this.#duration, this.#errors];
  }
}
