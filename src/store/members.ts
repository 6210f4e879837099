import { constants as zlib, crc32, createDeflateRaw, gzipSync, type DeflateRaw, type ZlibOptions } from 'node:zlib';

// A gzip header (RFC 1952 §2.3) with no name and no time: deflate, fastest level, Unix.
const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3]);
// A final, empty, fixed-Huffman deflate block: it ends a member whose output was flushed.
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);
// What a full flush ends its output with: an empty stored block's length and its complement.
const FLUSH_MARK = Buffer.from([0x00, 0x00, 0xff, 0xff]);
// Large, so the engine takes a new output Buffer (an ArrayBuffer) seldom; each member is
// copied out of it at once.
const CHUNK_SIZE = 64 * 1024;

/**
 * Makes gzip members with one raw deflate engine that lives as long as the store. gzipSync
 * makes an engine per call: a native handle that no minor GC can collect, the stream around it
 * and an ArrayBuffer for its state, all promoted and then swept one by one by a mark-compact.
 * With 10,000 units that was 1,250 engines in every round of polls, and most of a mark-compact's
 * final pause. Here each text is deflated and fully flushed, which ends its output on a byte
 * boundary with no reference to earlier texts; a final empty block, the text's CRC-32 and its
 * length make that output a member of its own, which a client decompresses alone or after any
 * other members. Compression runs in libuv's thread pool, one text at a time.
 */
export class MemberWriter {
  readonly #createEngine: (options: ZlibOptions) => DeflateRaw;
  #engine: DeflateRaw | undefined;
  readonly #out: Buffer[] = [];
  #outLength = 0;
  /** The member being made: settled once its flush is complete. */
  #flushed: (() => void) | undefined;
  /** Whether the flush of the member being made has called back. */
  #flushCalled = false;
  #failed: ((err: Error) => void) | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  /** `createEngine` is node:zlib's createDeflateRaw but in tests, which make engines that fail. */
  constructor(createEngine: (options: ZlibOptions) => DeflateRaw = createDeflateRaw) {
    this.#createEngine = createEngine;
  }

  /**
   * `text` gzip-compressed as one member, which the caller may keep; `text` must not change
   * until the promise settles. Falls back to gzipSync should the engine fail.
   */
  member(text: Buffer): Promise<Buffer> {
    const made = this.#queue.then(() => this.#deflate(text)).catch(() => {
      this.#reset();
      return gzipSync(text, { level: zlib.Z_BEST_SPEED });
    });
    this.#queue = made;
    return made;
  }

  #deflate(text: Buffer): Promise<Buffer> {
    const engine = (this.#engine ??= this.#start());
    return new Promise<Buffer>((resolve, reject) => {
      this.#failed = reject;
      this.#flushed = () => {
        const body = Buffer.concat(this.#out, this.#outLength);
        this.#out.length = this.#outLength = 0;
        const trailer = Buffer.allocUnsafe(8);
        trailer.writeUInt32LE(crc32(text), 0);
        trailer.writeUInt32LE(text.length >>> 0, 4);
        resolve(Buffer.concat([HEADER, body, FINAL_BLOCK, trailer]));
      };
      this.#flushCalled = false;
      engine.write(text);
      engine.flush(zlib.Z_FULL_FLUSH, () => {
        this.#flushCalled = true;
        this.#maybeFlushed();
      });
    });
  }

  #start(): DeflateRaw {
    const engine = this.#createEngine({ level: zlib.Z_BEST_SPEED, chunkSize: CHUNK_SIZE });
    engine.on('data', (chunk: Buffer) => {
      this.#out.push(chunk);
      this.#outLength += chunk.length;
      this.#maybeFlushed();
    });
    engine.on('error', (err: Error) => this.#failed?.(err));
    return engine;
  }

  // Output can still be on its way when the flush calls back; the member is complete once the
  // flush has called back, nothing waits to be read, and the output ends as a full flush ends
  // it. Nothing of the next text is written before then.
  #maybeFlushed(): void {
    if (this.#flushed === undefined || !this.#flushCalled || this.#engine!.readableLength > 0 || this.#outLength < FLUSH_MARK.length) return;
    const last = this.#out[this.#out.length - 1]!;
    const tail = last.length >= FLUSH_MARK.length ? last.subarray(last.length - FLUSH_MARK.length) : Buffer.concat(this.#out).subarray(-FLUSH_MARK.length);
    if (!tail.equals(FLUSH_MARK)) return;
    const flushed = this.#flushed;
    this.#flushed = this.#failed = undefined;
    flushed();
  }

  #reset(): void {
    this.#engine?.destroy();
    this.#engine = undefined;
    this.#out.length = this.#outLength = 0;
    this.#flushed = this.#failed = undefined;
  }
}
