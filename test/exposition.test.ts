import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { writeNumber } from '../src/store/exposition.js';

// What prom-client writes for a value, and what the store's lines must match byte for byte.
const printed = (value: number) => `${value}`;

const written = (value: number) => {
  const out = Buffer.alloc(40, 0x78);
  const end = writeNumber(out, 3, value);
  expect(out.subarray(0, 3).toString('latin1')).toBe('xxx');
  expect(out[end]).toBe(0x78);
  return out.toString('latin1', 3, end);
};

describe('a sample value written into a Buffer', () => {
  it('reads as JavaScript prints it, for any double', () => {
    fc.assert(
      fc.property(fc.double(), (value) => {
        expect(written(value)).toBe(printed(value));
      }),
      { numRuns: 5_000 },
    );
  });

  it('reads as JavaScript prints it, for any integer a counter or a token count can be', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (value) => {
        expect(written(value)).toBe(printed(value));
      }),
      { numRuns: 5_000 },
    );
  });

  it('reads as JavaScript prints it at the edges: zero, minus zero, powers of ten, the largest safe integers and beyond', () => {
    const edges = [0, -0, 1, -1, 9, 10, 99, 100, 1e15, 1e15 - 1, 1e16, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, 2 ** 53 + 2, 1e21, 1e21 - 65536, 0.1, 1764633600.123, Number.MIN_VALUE, Number.MAX_VALUE, NaN, Infinity, -Infinity];
    for (const value of edges) expect(written(value), String(value)).toBe(printed(value));
  });
});
