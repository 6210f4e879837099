import { createDeflateRaw, gunzipSync, type DeflateRaw, type ZlibOptions } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemberWriter } from '../src/store/members.js';

// Texts like the store's: exposition lines, from none to more than one engine output chunk.
const text = fc
  .array(fc.tuple(fc.constantFrom('flashback_private_chat_tokens_in', 'flashback_target_up'), fc.string({ unit: 'grapheme', maxLength: 12 }), fc.double({ noNaN: true })), { maxLength: 60 })
  .map((lines) => Buffer.from(lines.map(([name, label, value]) => `${name}{target="${label}"} ${value}\n`).join('')));

describe('gzip members from one deflate engine', () => {
  it('each inflate to their text, alone and concatenated in any order, when asked for all at once', async () => {
    const writer = new MemberWriter();
    await fc.assert(
      fc.asyncProperty(
        fc.array(text, { minLength: 1, maxLength: 12 }).chain((texts) => fc.tuple(fc.constant(texts), fc.shuffledSubarray(texts.map((_, i) => i), { minLength: texts.length }))),
        async ([texts, order]) => {
          const members = await Promise.all(texts.map((t) => writer.member(t)));
          members.forEach((member, i) => expect(gunzipSync(member).equals(texts[i]!)).toBe(true));
          const joined = Buffer.concat(order.map((i) => members[i]!));
          expect(gunzipSync(joined).equals(Buffer.concat(order.map((i) => texts[i]!)))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('compresses a text larger than its output chunk, and the empty text', async () => {
    const writer = new MemberWriter();
    const large = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `x_total{i="${(i * 7919) % 100_003}"} ${i * 31}\n`).join(''));
    const [big, empty] = await Promise.all([writer.member(large), writer.member(Buffer.alloc(0))]);
    expect(gunzipSync(big).equals(large)).toBe(true);
    expect(big.length).toBeLessThan(large.length / 3);
    expect(gunzipSync(empty).length).toBe(0);
  });
});

describe('when the deflate engine fails', () => {
  // A real engine that breaks on its first write, as one would on a zlib error; counted, to see
  // that the writer starts a new one for the next text.
  const breaking = () => {
    const made: DeflateRaw[] = [];
    const create = (options: ZlibOptions) => {
      const engine = createDeflateRaw(options);
      if (made.length === 0) engine.write = () => (process.nextTick(() => engine.destroy(new Error('zlib broke'))), true);
      made.push(engine);
      return engine;
    };
    return { made, create };
  };

  it('still makes the member, with gzipSync, and the next one with a new engine', async () => {
    const { made, create } = breaking();
    const writer = new MemberWriter(create);
    const first = Buffer.from('flashback_exporter_target_up{target="a"} 1\n');
    const second = Buffer.from('flashback_exporter_target_up{target="b"} 0\n');
    const [a, b] = await Promise.all([writer.member(first), writer.member(second)]);
    expect(gunzipSync(a).equals(first)).toBe(true);
    expect(gunzipSync(b).equals(second)).toBe(true);
    expect(gunzipSync(Buffer.concat([a, b])).equals(Buffer.concat([first, second]))).toBe(true);
    expect(made).toHaveLength(2);
    expect(made[0]!.destroyed).toBe(true);
  });
});
