import { partLength, renderPart, type Part } from './block.js';
import { PIECE_SIZE, type PiecePool } from './pool.js';

/** Part of a response body, in a Buffer lent from the store's pool until `done` is called. */
export interface Piece {
  readonly text: Buffer;
  readonly done: () => void;
}

/** A snapshot read after it was released: its bytes may already belong to newer blocks. */
export class SnapshotReleasedError extends Error {
  readonly code = 'FLASHBACK_ERR_SNAPSHOT_RELEASED';
  constructor() {
    super('snapshot read after a newer one replaced it and its last reader finished; take store.snapshot() again');
    this.name = 'SnapshotReleasedError';
  }
}

/**
 * Who still reads a snapshot: responses iterating its pieces, and pieces lent to sockets. Once
 * a newer snapshot retires it and the last reader is done, it is released (`onRelease`): its
 * views' bytes go back to the store's slabs and its gzip pieces to the pool, for the next
 * rebuilds, rather than waiting for a mark-compact.
 */
export class Readers {
  #count = 0;
  #retired = false;
  #released = false;
  readonly #onRelease: () => void;

  constructor(onRelease: () => void) {
    this.#onRelease = onRelease;
  }

  /** A reader starts; reading a released snapshot throws, as its bytes may have been reused. */
  enter(): void {
    if (this.#released) throw new SnapshotReleasedError();
    this.#count++;
  }

  /** Throws if the snapshot was released: for what reads it at once, without counting as a reader. */
  check(): void {
    if (this.#released) throw new SnapshotReleasedError();
  }

  leave(): void {
    this.#count--;
    this.#release();
  }

  /** A newer snapshot exists: this one is released as soon as nobody reads it. */
  retire(): void {
    this.#retired = true;
    this.#release();
  }

  #release(): void {
    if (!this.#retired || this.#count > 0 || this.#released) return;
    this.#released = true;
    this.#onRelease();
  }
}

/**
 * A snapshot's plain text, its parts rendered into pooled pieces as each is taken. The reader is
 * counted from this call, not from the first piece taken, so that a newer snapshot cannot
 * release this one in between; pieces, once rendered, no longer read the snapshot.
 */
export function pieces(parts: readonly Part[], pool: PiecePool, readers: Readers): Iterable<Piece> {
  readers.enter();
  return renderPieces(parts, pool, readers);
}

function* renderPieces(parts: readonly Part[], pool: PiecePool, readers: Readers): Generator<Piece> {
  try {
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
  } finally {
    readers.leave();
  }
}

/**
 * The members of a snapshot copied into Buffers of up to a piece's size, made as they are first
 * asked for and then kept: a scrape that starts before the last piece exists makes it while the
 * earlier ones are on the wire, and never holds the event loop for the whole copy (1.1 MB, about
 * 2 ms at 100k series).
 * The pieces are lent by the store's pool, and go back to it once the snapshot is released:
 * with Prometheus scraping while polls land, a megabyte of new Buffers per snapshot was most of
 * what drove major GCs.
 */
export class MemberPieces {
  readonly #members: readonly Buffer[];
  readonly #pool: PiecePool;
  readonly #readers: Readers;
  /** Pieces made so far, each a view of a pooled Buffer (or a member larger than a piece). */
  readonly #made: { readonly text: Buffer; readonly pooled: Buffer | undefined }[] = [];
  #next = 0;

  constructor(members: readonly Buffer[], pool: PiecePool, readers: Readers) {
    this.#members = members;
    this.#pool = pool;
    this.#readers = readers;
  }

  /** The pieces, each counted as a reader of the snapshot until its `done`, as the iteration is. */
  pieces(): Iterable<Piece> {
    this.#readers.enter();
    return this.#lend();
  }

  *#lend(): Generator<Piece> {
    try {
      for (let i = 0; i < this.#made.length || this.#next < this.#members.length; i++) {
        const piece = this.#made[i] ?? this.#make();
        this.#readers.enter();
        let lent = true;
        yield {
          text: piece.text,
          done: () => {
            if (lent) (lent = false), this.#readers.leave();
          },
        };
      }
    } finally {
      this.#readers.leave();
    }
  }

  /** The snapshot is released: nobody reads the pieces any more, and the pool gets them back. */
  free(): void {
    for (const { pooled } of this.#made) if (pooled !== undefined) this.#pool.give(pooled);
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
