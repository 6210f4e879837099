import { crc32 } from 'node:zlib';

// A stored (uncompressed) deflate block holds at most this many bytes (RFC 1951 §3.2.4).
const STORED_BLOCK_MAX = 0xffff;
// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown (RFC 1952 §2.3).
const HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);

/**
 * `data` as one gzip member of stored deflate blocks: what gzipSync at level 0 makes, without
 * setting up a deflate stream (a few hundred KiB of zlib state, about 80 µs) for the few KiB
 * of per-scrape lines that follow the cached, compressed members of the store.
 */
export function storedGzipMember(data: Buffer): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / STORED_BLOCK_MAX));
  const out = Buffer.allocUnsafe(HEADER.length + blocks * 5 + data.length + 8);
  let o = HEADER.copy(out, 0);
  for (let i = 0; i < blocks; i++) {
    const start = i * STORED_BLOCK_MAX;
    const length = Math.min(STORED_BLOCK_MAX, data.length - start);
    out[o++] = i === blocks - 1 ? 1 : 0; // BFINAL on the last block; BTYPE 00 (stored)
    out.writeUInt16LE(length, o);
    out.writeUInt16LE(~length & 0xffff, o + 2);
    o += 4;
    o += data.copy(out, o, start, start + length);
  }
  out.writeUInt32LE(crc32(data), o);
  out.writeUInt32LE(data.length >>> 0, o + 4);
  return out;
}
