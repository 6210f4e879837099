import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseStatsBody, parseStatsBodyFast, parseStatsBodyWithSchema, pointFields } from '../src/api/response.js';
import { FlashbackApiError } from '../src/api/errors.js';
import { fixture, jsonFixture } from './support/fixtures.js';

/** The schema's verdict: the parsed response, or the error message it words. */
function bySchema(body: unknown): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: parseStatsBodyWithSchema(body) };
  } catch (err) {
    if (!(err instanceof FlashbackApiError)) throw err;
    return { ok: false, message: err.message };
  }
}

// Bodies near the valid shape: each documented field is either right or one of the wrong
// things an API (or a proxy) sends, so the fast path meets every way of being almost valid.
const anything = fc.oneof(fc.constant(undefined), fc.constant(null), fc.boolean(), fc.string({ maxLength: 4 }), fc.constant([]), fc.constant({}));
const number = fc.oneof(fc.integer(), fc.double(), fc.constant(Number.POSITIVE_INFINITY), fc.constant(Number.NaN), fc.constant(1e308));
const field = fc.oneof({ weight: 12, arbitrary: number }, { weight: 1, arbitrary: anything });
// Mostly whole records, sometimes with keys missing.
const record = <T extends Record<string, fc.Arbitrary<unknown>>>(shape: T, required: (keyof T & string)[]) =>
  fc.oneof({ weight: 8, arbitrary: fc.record(shape, { requiredKeys: required }) }, { weight: 1, arbitrary: fc.record(shape, { requiredKeys: [] }) });
const point = record({ ts: field, tokensIn: field, tokensOut: field, requests: field, cachedTokens: field, region: fc.string({ maxLength: 3 }) }, ['ts', 'tokensIn', 'tokensOut', 'requests']);
const body = record(
  {
    success: fc.oneof({ weight: 12, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: anything }),
    meta: fc.oneof(
      { weight: 12, arbitrary: fc.record({ start: field, end: field, timeBucketSize: fc.oneof(fc.string({ maxLength: 3 }), anything), window: fc.string() }, { requiredKeys: [] }) },
      { weight: 1, arbitrary: anything },
    ),
    summary: fc.oneof({ weight: 12, arbitrary: fc.dictionary(fc.string({ maxLength: 5 }), field, { maxKeys: 6 }) }, { weight: 1, arbitrary: anything }),
    series: fc.oneof({ weight: 12, arbitrary: fc.array(point, { maxLength: 4 }) }, { weight: 1, arbitrary: anything }),
    extra: fc.jsonValue({ maxDepth: 1 }),
  },
  ['success', 'meta', 'summary', 'series'],
);

describe('the response check', () => {
  it('takes the fast path for a valid body and returns what the schema returns', () => {
    const ok = jsonFixture('api/ok.json');
    expect(parseStatsBodyFast(ok)).toBeDefined();
    expect(parseStatsBodyFast(ok)).toEqual(parseStatsBodyWithSchema(ok));
  });

  it('never lets the fast path accept a body the schema rejects, nor read one differently', () => {
    fc.assert(
      fc.property(fc.oneof(body, fc.jsonValue({ maxDepth: 3 })), (value) => {
        const fast = parseStatsBodyFast(value);
        const schema = bySchema(value);
        if (fast !== undefined) expect(schema).toEqual({ ok: true, value: fast });
      }),
      { numRuns: 3_000 },
    );
  });

  it('leaves enough bodies to the fast path for the property above to mean something', () => {
    const samples = fc.sample(body, { numRuns: 2_000, seed: 42 });
    const fast = samples.filter((value) => parseStatsBodyFast(value) !== undefined).length;
    const valid = samples.filter((value) => bySchema(value).ok).length;
    expect(fast).toBeGreaterThan(100);
    // Every body the schema accepts among these is one the fast path takes too.
    expect(fast).toBe(valid);
  });

  it('words a rejected body with the path of its first problem', () => {
    expect(() => parseStatsBody(jsonFixture('api/wrong-type-string.json'))).toThrow(/series\[0\]\.tokensIn/);
    expect(() => parseStatsBody(JSON.parse(fixture('api/missing-fields.json')))).toThrow(/summary/);
  });

  it("reads a point's numeric fields in the API's order, leaving out ts, text and non-finite numbers", () => {
    expect(pointFields({ ts: 1, tokensIn: 2, region: 'eu', tokensOut: Number.POSITIVE_INFINITY, requests: 3, cachedTokens: 4 })).toEqual([
      ['tokensIn', 2],
      ['requests', 3],
      ['cachedTokens', 4],
    ]);
  });
});
