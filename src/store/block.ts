import { writeNumber } from './exposition.js';
import { MemberWriter } from './members.js';
import { PIECE_SIZE, PiecePool } from './pool.js';

// A metric family's lines, in blocks of BLOCK_SIZE units' slots: each block keeps a view of
// its lines that never changes once made (so snapshots share it), and the changes that its
// next rebuild applies. How and why the store keeps text this way: store.ts.
export const BLOCK_SIZE = 128;
const EMPTY = Buffer.alloc(0);
const NEWLINE = 0x0a;

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

/** A block's content at one rebuild; never changed afterwards, so snapshots can share it. */
export interface BlockView {
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
  /** The slabs that `tails` and `member` were carved from, given back when nobody holds the view. */
  readonly ownSlab: Slab | undefined;
  memberSlab: Slab | undefined;
  /** Holders: its block while it is the block's view, and each snapshot not yet released. */
  holders: number;
}

const EMPTY_VIEW: BlockView = {
  tails: EMPTY,
  ends: new Uint32Array(BLOCK_SIZE),
  lines: new Uint32Array(BLOCK_SIZE),
  labels: [],
  length: 0,
  member: EMPTY,
  ownSlab: undefined,
  memberSlab: undefined,
  holders: 0,
};

/** A snapshot (or a block) starts holding a view: its bytes are not reused until it lets go. */
export function holdView(view: BlockView): void {
  view.holders++;
}

/**
 * A holder lets go of a view: once none is left, its bytes go back to the slabs, to be carved
 * again by the next rebuilds. The caller promises never to read the view again.
 */
export function releaseView(view: BlockView, slabs: Slabs): void {
  if (view === EMPTY_VIEW || --view.holders > 0) return;
  if (view.ownSlab !== undefined) slabs.give(view.ownSlab);
  if (view.memberSlab !== undefined) slabs.give(view.memberSlab);
}

/** A family's constant bytes: its header, and the name that opens each line. */
export interface FamilyText {
  readonly header: Buffer;
  readonly headerMember: Buffer;
  /** `name{`: the head of a line whose unit has labels. */
  readonly open: Buffer;
  /** `name`: the head of a line whose unit has none. */
  readonly bare: Buffer;
}

/** Writes a view's lines into `out` at `offset` (which has room for `view.length` bytes); returns the end. */
export function renderView(view: BlockView, family: FamilyText, out: Buffer, offset: number): number {
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
export class Block {
  view: BlockView = EMPTY_VIEW;
  /** Lent by the store's scratch from the first change to the rebuild. */
  changes: Changes | undefined;
  #part: Part | undefined;

  /**
   * The view as a part of a snapshot: made once per view and shared by the snapshots that hold
   * it. One made per block at every build was a thousand objects a build at 10,000 units, and
   * a snapshot lives until the next one, long enough for some of them to be promoted.
   */
  part(family: FamilyText): Part {
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
      releaseView(old, scratch.slabs);
      return;
    }
    // A slot's label set changes only when a new unit takes it: the old list nearly always serves.
    let sameLabels = true;
    for (let i = 0; i < BLOCK_SIZE && sameLabels; i++) sameLabels = labels[i] === old.labels[i];
    const ownSlab = scratch.slabs.take(VIEW_OFFSETS + total);
    const own = scratch.slabs.carved;
    const view: BlockView = {
      ends: new Uint32Array(own.buffer, own.byteOffset, BLOCK_SIZE),
      lines: new Uint32Array(own.buffer, own.byteOffset + BLOCK_SIZE * 4, BLOCK_SIZE),
      tails: own.subarray(VIEW_OFFSETS),
      member: EMPTY,
      labels: sameLabels ? old.labels : labels.slice(),
      length,
      ownSlab,
      memberSlab: undefined,
      holders: 1,
    };
    view.ends.set(ends);
    view.lines.set(lines);
    tails.copy(view.tails, 0, 0, total);
    scratch.pieces.give(piece);
    this.view = view;
    releaseView(old, scratch.slabs);
  }
}

/**
 * Gives a view just rebuilt its gzip member. The view's text is rendered again for it (a view
 * never changes, so it renders the same), as the member is made in the thread pool while the
 * scratch Buffers serve other rebuilds.
 */
export async function compressView(view: BlockView, family: FamilyText, scratch: Scratch): Promise<void> {
  const text = view.length <= PIECE_SIZE ? scratch.pieces.take() : Buffer.allocUnsafeSlow(view.length);
  renderView(view, family, text, 0);
  const member = await scratch.members.member(text.subarray(0, view.length));
  if (text.length === PIECE_SIZE) scratch.pieces.give(text);
  view.memberSlab = scratch.slabs.take(member.length);
  view.member = scratch.slabs.carved;
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
// summary statistics, say) gets a slab of its own, its size rounded up to a power of two.
const SLAB_SIZE = 64 * 1024;
const SLAB_VIEW_MAX = 16 * 1024;
// Empty slabs kept for the next rebuilds: 8 MiB of small ones, and of each larger size as many
// as a round of 10,000 units replaces. What a shrunken configuration leaves beyond is collected.
const FREE_SLABS_MAX = 128;
const FREE_LARGE_MAX = 64;

/** A Buffer that views are carved from, and how many carved parts of it are still held. */
export class Slab {
  readonly buffer: Buffer;
  live = 0;
  constructor(buffer: Buffer) {
    this.buffer = buffer;
  }
}

/**
 * Hands out the Buffers of block views and their gzip members, carved one after the other from
 * shared slabs, and takes them back once no block or snapshot holds them (see releaseView).
 * - A Buffer of its own per view was an ArrayBuffer per rebuild: with 10,000 units, two
 *   thousand of them replaced in every round, promoted (a view lives until its block's next
 *   rebuild) and swept one by one in a mark-compact's final pause.
 * - Slabs left to the garbage collector were still most of what started the mark-compacts
 *   while polls land: V8 counts the external memory allocated since the last one as old
 *   generation, and a round replaces nearly every view, 8 MB of them at 10,000 units. A slab
 *   whose carved parts are all given back is carved again from the start instead.
 * A view that stays (a block of poll errors that no longer change) keeps its slab, at most
 * SLAB_SIZE for each such view.
 */
export class Slabs {
  #slab: Slab | undefined;
  #used = 0;
  readonly #free: Slab[] = [];
  /** Empty slabs of views larger than SLAB_VIEW_MAX, by size. */
  readonly #large = new Map<number, Slab[]>();
  /** Slabs allocated so far, for tests and the benchmark. */
  allocated = 0;
  /** The bytes carved by the last take(). Kept here, not returned, so take() allocates no pair. */
  carved: Buffer = EMPTY;

  /** Carves `size` bytes (in `carved`) and returns the slab to give back when they are no longer held. */
  take(size: number): Slab {
    if (size > SLAB_VIEW_MAX) {
      const bytes = 2 ** Math.ceil(Math.log2(size));
      const slab = this.#large.get(bytes)?.pop() ?? this.#allocate(bytes);
      slab.live = 1;
      this.carved = slab.buffer.subarray(0, size);
      return slab;
    }
    // 8-byte aligned, for the Uint32Arrays laid over a view's first bytes.
    let at = (this.#used + 7) & ~7;
    if (this.#slab === undefined || at + size > SLAB_SIZE) {
      this.#slab = this.#free.pop() ?? this.#allocate(SLAB_SIZE);
      at = 0;
    }
    const slab = this.#slab;
    slab.live++;
    this.#used = at + size;
    this.carved = slab.buffer.subarray(at, at + size);
    return slab;
  }

  /** Gives back one carved part of `slab`; once all are given back, the slab is carved again. */
  give(slab: Slab): void {
    if (--slab.live > 0) return;
    if (slab === this.#slab) {
      this.#used = 0;
    } else if (slab.buffer.length !== SLAB_SIZE) {
      const free = this.#large.get(slab.buffer.length) ?? this.#large.set(slab.buffer.length, []).get(slab.buffer.length)!;
      if (free.length < FREE_LARGE_MAX) free.push(slab);
    } else if (this.#free.length < FREE_SLABS_MAX) {
      this.#free.push(slab);
    }
  }

  #allocate(bytes: number): Slab {
    this.allocated++;
    return new Slab(Buffer.allocUnsafeSlow(bytes));
  }
}

/**
 * What block rebuilds work in, reused from one to the next; one per store. The pool lends the
 * Buffers the text is rendered into, for rebuilds and scrapes alike.
 */
export class Scratch {
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

/** One piece of a snapshot: a family's header, or one of its blocks as it was at the snapshot. */
export interface Part {
  readonly family: FamilyText;
  readonly view: BlockView | undefined;
}

/** Bytes of a part's plain text. */
export const partLength = (part: Part) => (part.view === undefined ? part.family.header.length : part.view.length);

/** Writes a part's plain text into `out` at `offset` (which has room for it); returns the end. */
export function renderPart(part: Part, out: Buffer, offset: number): number {
  if (part.view !== undefined) return renderView(part.view, part.family, out, offset);
  out.set(part.family.header, offset);
  return offset + part.family.header.length;
}

