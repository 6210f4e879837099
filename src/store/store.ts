import { gzipSync, constants as zlib } from 'node:zlib';
import { renderLabels, escapeLabelValue, writeNumber, type LabelPairs } from './exposition.js';
import { TurnBudget } from '../loop/turns.js';
import { MemberWriter } from './members.js';
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
const BLOCK_SIZE = 128;
// After a change, the snapshot is rebuilt this much later in the background (unless a scrape
// asks first), so a scrape seldom waits for a rebuild, and changed text is not held as strings
// until someone scrapes.
const BUILD_DELAY_MS = 1_000;
// Fastest compression: the text is so repetitive that higher levels gain only a few percent.
// For a family's header, made once; blocks' members come from the store's MemberWriter. An
// output chunk under 4 KiB comes from Buffer's shared pool.
const GZIP_OPTIONS = { level: zlib.Z_BEST_SPEED, chunkSize: 4095 };
const EMPTY = Buffer.alloc(0);
const NEWLINE = 0x0a;

// Plain text is rendered, and gzip members copied, into Buffers of this size, and up to
// POOL_SIZE of them are kept for the next scrape, so serving a large store allocates (and
// later collects) next to nothing.
const PIECE_SIZE = 256 * 1024;
const POOL_SIZE = 8;

/** Render Buffers kept from one scrape to the next; one per store, passed to what renders. */
class PiecePool {
  readonly #free: Buffer[] = [];

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(PIECE_SIZE);
  }

  give(piece: Buffer): void {
    if (this.#free.length < POOL_SIZE) this.#free.push(piece);
  }
}

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

/**
 * Writes the text after a line's label set at `at`: its extra label, its value and the newline;
 * returns the end. Written in parts, as a string made of the value would be promoted (see
 * writeNumber). `out` must have room for the extra label's UTF-8 and 32 bytes more.
 */
function writeTail(out: Buffer, at: number, labels: Buffer, extra: string, value: number): number {
  let o = at;
  if (labels.length === 0 && extra !== '') out[o++] = 0x7b; // '{'
  if (extra !== '') o += out.write(extra, o, 'utf8');
  if (labels.length > 0 || extra !== '') out[o++] = 0x7d; // '}'
  out[o++] = 0x20; // ' '
  o = writeNumber(out, o, value);
  out[o++] = NEWLINE;
  return o;
}

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

/** The exposition text at one moment. */
export interface Snapshot {
  readonly version: number;
  /**
   * The text as gzip members, in order: their concatenation is one gzip file (RFC 1952 §2.2)
   * that every reader, Prometheus included, decodes as one stream.
   */
  readonly members: readonly Buffer[];
  /** Bytes of the plain text. */
  readonly byteLength: number;
  /** Bytes of the members together. */
  readonly gzipLength: number;
  /** The plain text, rendered anew on each access (for --once and tests). */
  readonly chunks: readonly Buffer[];
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

/** Part of a response body, in a Buffer lent from the store's pool until `done` is called. */
export interface Piece {
  readonly text: Buffer;
  readonly done: () => void;
}

/** A block's content at one rebuild; never changed afterwards, so snapshots can share it. */
interface BlockView {
  /** Each slot's line tails, one after the other. */
  readonly tails: Buffer;
  /** End offset of each slot's tails in `tails`. */
  readonly ends: Uint32Array;
  /** Lines of each slot. */
  readonly lines: Uint32Array;
  /** The label set of each slot's lines, as rendered when they were set. */
  readonly labels: readonly (Buffer | undefined)[];
  /** Bytes of the rendered text. */
  readonly length: number;
  /**
   * The rendered text as a gzip member; empty when the block has no lines. Set by compressView
   * after the rebuild, before any snapshot holds the view; never changed afterwards.
   */
  member: Buffer;
}

const EMPTY_VIEW: BlockView = { tails: EMPTY, ends: new Uint32Array(BLOCK_SIZE), lines: new Uint32Array(BLOCK_SIZE), labels: [], length: 0, member: EMPTY };

/** A family's constant bytes: its header, and the name that opens each line. */
interface FamilyText {
  readonly header: Buffer;
  readonly headerMember: Buffer;
  /** `name{`: the head of a line whose unit has labels. */
  readonly open: Buffer;
  /** `name`: the head of a line whose unit has none. */
  readonly bare: Buffer;
}

/** Writes a view's lines into `out` at `offset` (which has room for `view.length` bytes); returns the end. */
function renderView(view: BlockView, family: FamilyText, out: Buffer, offset: number): number {
  const { tails, ends, labels } = view;
  let o = offset;
  let p = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const end = ends[i]!;
    if (p === end) continue;
    const label = labels[i]!;
    const head = label.length > 0 ? family.open : family.bare;
    while (p < end) {
      out.set(head, o);
      o += head.length;
      if (label.length > 0) {
        out.set(label, o);
        o += label.length;
      }
      let c: number;
      do {
        c = tails[p++]!;
        out[o++] = c;
      } while (c !== NEWLINE);
    }
  }
  return o;
}

/**
 * Lines that replace some slots' of one block at its next rebuild. They are kept as numbers
 * and interned label strings, not as text: a poll then leaves nothing behind that outlives a
 * minor GC, where its line tails as strings (and the Map holding them) lived until the next
 * rebuild, were promoted, and made most of the old generation's churn while 10,000 units'
 * polls land. A block has them only between a change and its rebuild, lent by the store.
 */
class Changes {
  /** Per slot: its lines waiting, or UNCHANGED; 0 removes its lines. */
  readonly counts = new Int32Array(BLOCK_SIZE).fill(UNCHANGED);
  /** Per slot: where its waiting lines begin in the arrays below. */
  readonly starts = new Int32Array(BLOCK_SIZE);
  /** The waiting lines, each slot's together: their values, and what goes before `}`. */
  values = new Float64Array(BLOCK_SIZE);
  extras: string[] = new Array<string>(BLOCK_SIZE).fill('');
  /** Lines used in the arrays above (a slot set twice before a rebuild leaves its first lines unused). */
  used = 0;

  /** Starts replacing a slot's lines: with none, until lines are added. */
  reset(i: number): void {
    this.counts[i] = 0;
    this.starts[i] = this.used;
  }

  /**
   * Adds a line to the slot's waiting lines. A slot's lines are added right after its reset
   * and one after the other (a poll writes one family's lines for one unit at a time), so
   * they are always the last ones in the arrays.
   */
  add(i: number, extra: string, value: number): void {
    this.#reserve(1);
    this.values[this.used] = value;
    this.extras[this.used] = extra;
    this.used++;
    this.counts[i]!++;
  }

  /** Back to no slot changed, keeping the arrays. */
  clear(): void {
    this.counts.fill(UNCHANGED);
    this.used = 0;
  }

  #reserve(lines: number): void {
    if (this.used + lines <= this.values.length) return;
    const size = Math.max(2 * this.values.length, this.used + lines);
    const values = new Float64Array(size);
    values.set(this.values.subarray(0, this.used));
    const extras = new Array<string>(size).fill('');
    for (let k = 0; k < this.used; k++) extras[k] = this.extras[k]!;
    this.values = values;
    this.extras = extras;
  }
}

/** One block of a family: its current view, and the changes its next rebuild applies. */
class Block {
  view: BlockView = EMPTY_VIEW;
  /** Lent by the store's scratch from the first change to the rebuild. */
  changes: Changes | undefined;
  #part: Part | undefined;

  /**
   * The view as a part of a snapshot: made once per view and shared by the snapshots that hold
   * it. One made per block at every build was a thousand objects a build at 10,000 units, and
   * a snapshot lives until the next one, long enough for some of them to be promoted.
   */
  part(family: Family): Part {
    if (this.#part?.view !== this.view) this.#part = { family, view: this.view };
    return this.#part;
  }

  /** Whether a slot has lines, counting changes not yet rebuilt. */
  has(i: number): boolean {
    const count = this.changes?.counts[i] ?? UNCHANGED;
    return count === UNCHANGED ? this.view.ends[i]! > (i === 0 ? 0 : this.view.ends[i - 1]!) : count > 0;
  }

  /** Starts replacing a slot's lines: with none, until lines are added to its changes. */
  reset(i: number, scratch: Scratch): Changes {
    const changes = (this.changes ??= scratch.changes());
    changes.reset(i);
    return changes;
  }

  /**
   * Makes a new view, without its member (see compressView): kept slots' tails are copied,
   * changed ones rendered from their values with the label set their unit has now. The work is
   * done in the store's scratch space, and the view's offsets and tails go into one Buffer
   * carved from a slab (see Slabs): each ArrayBuffer is an extension that every mark-compact
   * sweeps one by one in its final pause, and four per view (two typed arrays, two Buffers)
   * made that sweep most of the pause.
   */
  rebuild(family: FamilyText, labelSet: (i: number) => Buffer, scratch: Scratch): void {
    const old = this.view;
    const changes = this.changes!;
    const counts = changes.counts;
    const { ends, lines, labels } = scratch;
    const piece = scratch.pieces.take();
    let tails = piece;
    let offset = 0;
    let length = 0;
    for (let i = 0; i < BLOCK_SIZE; i++) {
      const start = offset;
      const count = counts[i]!;
      lines[i] = 0;
      labels[i] = undefined;
      if (count === UNCHANGED) {
        const from = i === 0 ? 0 : old.ends[i - 1]!;
        if (offset + old.ends[i]! - from > tails.length) tails = larger(tails, 2 * (offset + old.ends[i]! - from), offset);
        offset += old.tails.copy(tails, offset, from, old.ends[i]!);
        lines[i] = old.lines[i]!;
        labels[i] = old.labels[i];
      } else if (count > 0) {
        const label = labelSet(i);
        for (let k = 0, at = changes.starts[i]!; k < count; k++, at++) {
          const extra = changes.extras[at]!;
          // A UTF-16 unit is at most 3 bytes of UTF-8; a number's text at most 25 characters.
          if (offset + 3 * extra.length + 32 > tails.length) tails = larger(tails, 2 * (offset + 3 * extra.length + 32), offset);
          offset = writeTail(tails, offset, label, extra, changes.values[at]!);
        }
        lines[i] = count;
        labels[i] = label;
      }
      ends[i] = offset;
      const label = labels[i];
      if (label !== undefined) length += lines[i]! * (label.length > 0 ? family.open.length + label.length : family.bare.length) + offset - start;
    }
    changes.clear();
    scratch.giveChanges(changes);
    this.changes = undefined;
    const total = offset;
    if (total === 0) {
      scratch.pieces.give(piece);
      this.view = EMPTY_VIEW;
      return;
    }
    // A slot's label set changes only when a new unit takes it: the old list nearly always serves.
    let sameLabels = true;
    for (let i = 0; i < BLOCK_SIZE && sameLabels; i++) sameLabels = labels[i] === old.labels[i];
    const own = scratch.slabs.take(VIEW_OFFSETS + total);
    const view: BlockView = {
      ends: new Uint32Array(own.buffer, own.byteOffset, BLOCK_SIZE),
      lines: new Uint32Array(own.buffer, own.byteOffset + BLOCK_SIZE * 4, BLOCK_SIZE),
      tails: own.subarray(VIEW_OFFSETS),
      member: EMPTY,
      labels: sameLabels ? old.labels : labels.slice(),
      length,
    };
    view.ends.set(ends);
    view.lines.set(lines);
    tails.copy(view.tails, 0, 0, total);
    scratch.pieces.give(piece);
    this.view = view;
  }
}

/**
 * Gives a view just rebuilt its gzip member. The view's text is rendered again for it (a view
 * never changes, so it renders the same), as the member is made in the thread pool while the
 * scratch Buffers serve other rebuilds.
 */
async function compressView(view: BlockView, family: FamilyText, scratch: Scratch): Promise<void> {
  const text = view.length <= PIECE_SIZE ? scratch.pieces.take() : Buffer.allocUnsafeSlow(view.length);
  renderView(view, family, text, 0);
  const member = await scratch.members.member(text.subarray(0, view.length));
  if (text.length === PIECE_SIZE) scratch.pieces.give(text);
  view.member = scratch.slabs.take(member.length);
  member.copy(view.member);
}

/** A Buffer of `size` bytes with the first `keep` bytes of `from`: a block's tails outgrew a piece. */
function larger(from: Buffer, size: number, keep: number): Buffer {
  const to = Buffer.allocUnsafeSlow(size);
  from.copy(to, 0, 0, keep);
  return to;
}

// A slot whose lines are as its block's view has them.
const UNCHANGED = -1;

// Changes kept for reuse: more than the blocks that change between two rebuilds while 10,000
// units are polled (about 120), far fewer than all blocks at once, as after a start or a
// reload, which would otherwise be kept for good (2 KiB or more each).
const CHANGES_KEPT = 256;

// Bytes of a view's `ends` and `lines`, in front of its tails in its one ArrayBuffer.
const VIEW_OFFSETS = 2 * BLOCK_SIZE * Uint32Array.BYTES_PER_ELEMENT;

// Views are carved from slabs of this size, under glibc's 128 KiB mmap threshold so that
// freeing one is not a system call in a mark-compact's pause; a larger view (a block of
// summary statistics, say) gets a Buffer of its own.
const SLAB_SIZE = 64 * 1024;
const SLAB_VIEW_MAX = 16 * 1024;

/**
 * Hands out the Buffers of block views, carved one after the other from shared slabs. A
 * Buffer of its own per view was an ArrayBuffer per rebuild: with 10,000 units, two thousand
 * of them replaced in every round, promoted (a view lives until its block's next rebuild) and
 * swept one by one in a mark-compact's final pause, 3–6 ms of it with --single-threaded-gc. A
 * slab is freed with the last view carved from it. Every poll rewrites its unit's lines, so a
 * round replaces nearly every view; one that stays (a block of poll errors that no longer
 * change) keeps its slab alive, at most SLAB_SIZE for each such view.
 */
class Slabs {
  #slab = EMPTY;
  #used = 0;

  take(size: number): Buffer {
    if (size > SLAB_VIEW_MAX) return Buffer.allocUnsafeSlow(size);
    // 8-byte aligned, for the Uint32Arrays laid over a view's first bytes.
    let at = (this.#used + 7) & ~7;
    if (at + size > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
      at = 0;
    }
    this.#used = at + size;
    return this.#slab.subarray(at, at + size);
  }
}

/**
 * What block rebuilds work in, reused from one to the next; one per store. The pool lends the
 * Buffers the text is rendered into, for rebuilds and scrapes alike.
 */
class Scratch {
  readonly pieces = new PiecePool();
  readonly slabs = new Slabs();
  readonly members = new MemberWriter();
  readonly ends = new Uint32Array(BLOCK_SIZE);
  readonly lines = new Uint32Array(BLOCK_SIZE);
  readonly labels: (Buffer | undefined)[] = new Array<Buffer | undefined>(BLOCK_SIZE).fill(undefined);
  /** Changes given back by rebuilt blocks, up to CHANGES_KEPT. */
  readonly #changes: Changes[] = [];

  /** Changes for a block that has none, all slots UNCHANGED. */
  changes(): Changes {
    return this.#changes.pop() ?? new Changes();
  }

  giveChanges(changes: Changes): void {
    if (this.#changes.length < CHANGES_KEPT) this.#changes.push(changes);
  }
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

/** One piece of a snapshot: a family's header, or one of its blocks as it was at the snapshot. */
interface Part {
  readonly family: Family;
  readonly view: BlockView | undefined;
}

const partLength = (part: Part) => (part.view === undefined ? part.family.header.length : part.view.length);

function renderPart(part: Part, out: Buffer, offset: number): number {
  if (part.view !== undefined) return renderView(part.view, part.family, out, offset);
  out.set(part.family.header, offset);
  return offset + part.family.header.length;
}

function* pieces(parts: readonly Part[], pool: PiecePool): Generator<Piece> {
  for (let i = 0; i < parts.length; ) {
    const size = partLength(parts[i]!);
    if (size > PIECE_SIZE) {
      const text = Buffer.allocUnsafeSlow(size);
      renderPart(parts[i++]!, text, 0);
      yield { text, done: () => {} };
      continue;
    }
    const piece = pool.take();
    let offset = 0;
    while (i < parts.length && offset + partLength(parts[i]!) <= PIECE_SIZE) offset = renderPart(parts[i++]!, piece, offset);
    yield { text: piece.subarray(0, offset), done: () => pool.give(piece) };
  }
}

/**
 * The members of a snapshot copied into Buffers of up to a piece's size, made as they are first
 * asked for and then kept: a scrape that starts before the last piece exists makes it while the
 * earlier ones are on the wire, and never holds the event loop for the whole copy (1.1 MB, about
 * 2 ms at 100k series).
 * The pieces are lent by the store's pool, and go back to it once the snapshot is retired and no
 * response still reads them: with Prometheus scraping while polls land, a megabyte of new Buffers
 * per snapshot was most of what drove major GCs.
 */
class MemberPieces {
  readonly #members: readonly Buffer[];
  readonly #pool: PiecePool;
  /** Pieces made so far, each a view of a pooled Buffer (or a member larger than a piece). */
  readonly #made: { readonly text: Buffer; readonly pooled: Buffer | undefined }[] = [];
  #next = 0;
  /** Iterations under way, and pieces handed out and not yet written. */
  #users = 0;
  #retired = false;

  constructor(members: readonly Buffer[], pool: PiecePool) {
    this.#members = members;
    this.#pool = pool;
  }

  *pieces(): Generator<Piece> {
    this.#users++;
    try {
      for (let i = 0; i < this.#made.length || this.#next < this.#members.length; i++) {
        const piece = this.#made[i] ?? this.#make();
        this.#users++;
        let lent = true;
        yield {
          text: piece.text,
          done: () => {
            if (lent) (lent = false), this.#release();
          },
        };
      }
    } finally {
      this.#release();
    }
  }

  /** A newer snapshot exists: the pieces go back to the pool as soon as nobody reads them. */
  retire(): void {
    this.#retired = true;
    this.#free();
  }

  #release(): void {
    this.#users--;
    this.#free();
  }

  #free(): void {
    if (!this.#retired || this.#users > 0) return;
    for (const { pooled } of this.#made) if (pooled !== undefined) this.#pool.give(pooled);
    // A late scrape of a retired snapshot makes its pieces again, and gives them back after.
    this.#made.length = 0;
    this.#next = 0;
  }

  #make(): { readonly text: Buffer; readonly pooled: Buffer | undefined } {
    const members = this.#members;
    const first = this.#next;
    let piece: { readonly text: Buffer; readonly pooled: Buffer | undefined };
    if (members[first]!.length > PIECE_SIZE) {
      // A member larger than a piece is a piece of its own.
      this.#next = first + 1;
      piece = { text: members[first]!, pooled: undefined };
    } else {
      const pooled = this.#pool.take();
      let size = 0;
      let end = first;
      while (end < members.length && size + members[end]!.length <= PIECE_SIZE) size += members[end++]!.copy(pooled, size);
      this.#next = end;
      piece = { text: pooled.subarray(0, size), pooled };
    }
    this.#made.push(piece);
    return piece;
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
  lastAttemptAt: number | undefined;
  lastSuccessAt: number | undefined;
  durationSeconds: number | undefined;
  lastError: string | undefined;
  errors: Map<string, number> | undefined;
}

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
  /** The current snapshot's gzip pieces, retired when a newer snapshot replaces it. */
  #gzipPieces: MemberPieces | undefined;
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
      if (unit.lastAttemptAt !== undefined) this.#attempted--;
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
        lastAttemptAt: undefined,
        lastSuccessAt: undefined,
        durationSeconds: undefined,
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
      const expiry = (unit.lastSuccessAt ?? 0) + unit.spec.staleAfterMs;
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
    const gzipPieces = new MemberPieces(members, this.#work.pieces);
    const snapshot: Snapshot = {
      version,
      members,
      byteLength,
      gzipLength,
      get chunks() {
        const text = Buffer.allocUnsafe(byteLength);
        let offset = 0;
        for (const part of parts) offset = renderPart(part, text, offset);
        return [text];
      },
      pieces: () => pieces(parts, this.#work.pieces),
      gzipPieces: () => gzipPieces.pieces(),
    };
    this.#snapshot = snapshot;
    this.#gzipPieces?.retire();
    this.#gzipPieces = gzipPieces;
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
    if (unit.lastAttemptAt === undefined) this.#attempted++;
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
