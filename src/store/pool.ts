// Plain text is rendered, and gzip members copied, into Buffers of this size, and up to
// POOL_SIZE of them are kept for the next scrape, so serving a large store allocates (and
// later collects) next to nothing.
export const PIECE_SIZE = 256 * 1024;
const POOL_SIZE = 8;

/** Render Buffers kept from one scrape to the next; one per store, passed to what renders. */
export class PiecePool {
  readonly #free: Buffer[] = [];

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(PIECE_SIZE);
  }

  give(piece: Buffer): void {
    if (this.#free.length < POOL_SIZE) this.#free.push(piece);
  }
}
