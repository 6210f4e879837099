import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getEventListeners } from 'node:events';
import { Agent } from 'undici';
import { createApiClient, parseRetryAfter, type ApiClientOptions } from '../src/api/client.js';
import { AbortedError, FlashbackApiError } from '../src/api/errors.js';
import { Pacer } from '../src/api/limiter.js';
import { TurnBudget } from '../src/loop/turns.js';
import { selectBucket } from '../src/api/bucket.js';
import { pointFields } from '../src/api/response.js';
import { FakeFlashback, type Reply } from './support/fake-flashback.js';
import { FakeClock } from './support/clock.js';
import { fixture, jsonFixture } from './support/fixtures.js';

let fake: FakeFlashback;
let agent: Agent;
const statuses: number[] = [];

beforeEach(async () => {
  fake = await FakeFlashback.start(() => ({ body: jsonFixture('api/ok.json') }));
  agent = new Agent({ connections: 4, keepAliveTimeout: 10_000 });
  statuses.length = 0;
});

afterEach(async () => {
  await agent.destroy();
  await fake.close();
});

function client(overrides: Partial<ApiClientOptions> = {}) {
  return createApiClient({
    baseUrl: fake.url,
    dispatcher: agent,
    token: () => 's3cret-token',
    timeoutMs: 2_000,
    concurrency: 4,
    retries: 0,
    maxResponseBytes: 64 * 1024,
    userAgent: 'flashback-exporter/1.2.3',
    random: () => 0,
    onResponse: (status) => statuses.push(status),
    ...overrides,
  });
}

async function failure(promise: Promise<unknown>): Promise<FlashbackApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof FlashbackApiError)) throw new Error(`expected a FlashbackApiError, got ${String(err)}`);
  return err;
}

describe('API requests', () => {
  it('sends the query with the parameter names of the API reference', async () => {
    await client().fetchStats({ scope: 'workspace', id: 'ws-42', window: '7d', timeBucketSize: '1d', model: 'gpt-4o', userId: 'u-7', apiKeyId: 'k-1', aiLlmId: 'llm-2' });
    expect(fake.requests[0]!.path).toBe('/v2/stats/private-chat');
    expect(fake.requests[0]!.query).toEqual({ scope: 'workspace', id: 'ws-42', window: '7d', timeBucketSize: '1d', model: 'gpt-4o', userId: 'u-7', apiKeyId: 'k-1', aiLlmId: 'llm-2' });
  });

  it('leaves out parameters that are not set', async () => {
    await client().fetchStats({ scope: 'org', window: '24h' });
    expect(fake.requests[0]!.query).toEqual({ scope: 'org', window: '24h' });
  });

  it('sends the bearer token, Accept: application/json and a User-Agent with the version', async () => {
    await client().fetchStats({ scope: 'org', window: '24h' });
    const headers = fake.requests[0]!.headers;
    expect(headers.authorization).toBe('Bearer s3cret-token');
    expect(headers.accept).toBe('application/json');
    expect(headers['user-agent']).toBe('flashback-exporter/1.2.3');
  });

  it('keeps a path prefix of the base URL', async () => {
    await client({ baseUrl: `${fake.url}/gateway/` }).fetchStats({ scope: 'org', window: '24h' });
    expect(fake.requests[0]!.path).toBe('/gateway/v2/stats/private-chat');
  });

  it('asks for the token on every request, so a rotated token is used at once', async () => {
    let n = 0;
    const api = client({ token: () => `token-${++n}` });
    await api.fetchStats({ scope: 'org', window: '24h' });
    await api.fetchStats({ scope: 'org', window: '24h' });
    expect(fake.requests.map((r) => r.headers.authorization)).toEqual(['Bearer token-1', 'Bearer token-2']);
  });

  it('returns numeric point fields and summary statistics, ignoring non-numeric ones', async () => {
    const response = await client().fetchStats({ scope: 'org', window: '24h' });
    expect(response.series).toHaveLength(3);
    expect(response.series[0]!.ts).toBe(1704146400);
    expect(pointFields(response.series[0]!)).toEqual([['tokensIn', 1200], ['tokensOut', 340], ['requests', 12], ['cachedTokens', 100]]);
    expect(response.summary).toEqual([['total', 1500], ['avg', 50], ['stdDev', 10.5], ['min', 0], ['max', 100], ['p10', 10], ['p50', 50], ['p90', 90], ['count', 24]]);
    expect(response.meta).toEqual({ start: 1704067200, end: 1704153600, timeBucketSize: '1h' });
  });

  it('drops numbers that are not finite (1e999 parses as Infinity)', async () => {
    fake.respond(() => ({ body: fixture('api/huge-number.json').replace(/\n/g, ''), headers: { 'content-type': 'application/json' } }));
    const response = await client().fetchStats({ scope: 'org', window: '24h' });
    expect(response.summary).toEqual([['avg', 5]]);
    expect(pointFields(response.series[0]!)).toEqual([['tokensIn', 5], ['tokensOut', 1], ['requests', 1]]);
  });

  it('reports each HTTP answer to the observer', async () => {
    fake.respond(() => ({ status: 500, body: { success: false, message: 'boom' } }));
    await failure(client().fetchStats({ scope: 'org', window: '24h' }));
    expect(statuses).toEqual([500]);
  });
});

describe('API failure classification', () => {
  const cases: { name: string; reply: Reply; reason: string; message: RegExp }[] = [
    { name: '401', reply: { status: 401, body: { success: false, message: 'Unauthorized' } }, reason: 'unauthorized', message: /rejected the token \(HTTP 401\)/ },
    { name: '403', reply: { status: 403, body: '' }, reason: 'unauthorized', message: /rejected the token \(HTTP 403\)/ },
    { name: '429', reply: { status: 429, body: { success: false, message: 'slow down' } }, reason: 'rate_limited', message: /HTTP 429.*slow down/ },
    { name: '400 with the API message', reply: { status: 400, body: jsonFixture('api/bad-request.json') }, reason: 'http_4xx', message: /HTTP 400: window must be one of/ },
    { name: '404', reply: { status: 404, body: 'nope' }, reason: 'http_4xx', message: /HTTP 404/ },
    { name: '500', reply: { status: 500, body: { success: false, message: 'internal' } }, reason: 'http_5xx', message: /HTTP 500: internal/ },
    { name: '503 with an HTML page', reply: { status: 503, body: fixture('api/error-page.html') }, reason: 'http_5xx', message: /^HTTP 503$/ },
    { name: '302', reply: { status: 302, headers: { location: '/elsewhere' } }, reason: 'invalid_response', message: /unexpected HTTP status 302/ },
    { name: 'success:false', reply: { body: jsonFixture('api/api-error.json') }, reason: 'api_error', message: /the API reported a failure: stats backend unavailable/ },
    { name: 'malformed JSON', reply: { body: fixture('api/truncated.json') }, reason: 'invalid_response', message: /not JSON/ },
    { name: 'an HTML page with 200', reply: { body: fixture('api/error-page.html') }, reason: 'invalid_response', message: /not JSON/ },
    { name: 'a JSON array', reply: { body: jsonFixture('api/array.json') }, reason: 'invalid_response', message: /unexpected response body/ },
    { name: 'missing fields', reply: { body: jsonFixture('api/missing-fields.json') }, reason: 'invalid_response', message: /summary/ },
    { name: '"tokensIn": "many"', reply: { body: jsonFixture('api/wrong-type-string.json') }, reason: 'invalid_response', message: /series\[0\]\.tokensIn/ },
    { name: '"tokensOut": null', reply: { body: jsonFixture('api/wrong-type-null.json') }, reason: 'invalid_response', message: /series\[0\]\.tokensOut/ },
    { name: 'an empty body', reply: { body: '' }, reason: 'invalid_response', message: /not JSON: empty/ },
  ];

  it.each(cases)('counts $name as $reason', async ({ reply, reason, message }) => {
    fake.respond(() => reply);
    const err = await failure(client().fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe(reason);
    expect(err.code).toBe(`FLASHBACK_ERR_${reason.toUpperCase()}`);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('s3cret-token');
  });

  it('counts a server that never answers as timeout', async () => {
    fake.respond(() => ({ hang: true }));
    const err = await failure(client({ timeoutMs: 300 }).fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('timeout');
  });

  it('counts a body that stalls half-way as timeout', async () => {
    fake.respond(() => ({ body: '{"success": true, "series": [', stallBody: true }));
    const err = await failure(client({ timeoutMs: 300 }).fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('timeout');
  });

  it('counts a reset connection as network', async () => {
    fake.respond(() => ({ reset: true }));
    const err = await failure(client().fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('network');
  });

  it('counts a refused connection as network', async () => {
    const url = fake.url;
    await fake.close();
    const err = await failure(client({ baseUrl: url }).fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('network');
    expect(err.message).toMatch(/ECONNREFUSED/);
    fake = await FakeFlashback.start();
  });

  it('cuts off a body larger than maxResponseBytes while streaming, without a Content-Length', async () => {
    const big = JSON.stringify({ success: true, meta: {}, summary: {}, series: Array.from({ length: 5000 }, (_, i) => ({ ts: i, tokensIn: 1, tokensOut: 1, requests: 1 })) });
    fake.respond(() => ({ body: big, headers: { 'transfer-encoding': 'chunked' } }));
    const err = await failure(client({ maxResponseBytes: 10_000 }).fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('too_large');
  });

  it('refuses a body whose Content-Length is over the limit, and the abandoned body raises nothing', async () => {
    fake.respond(() => ({ body: 'x'.repeat(20_000) }));
    const err = await failure(client({ maxResponseBytes: 10_000 }).fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('too_large');
    expect(err.message).toMatch(/20000 bytes/);
    // An error event from the destroyed body would surface here as an uncaught exception.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 20));
  });

  it('refuses a huge declared body without reading it', async () => {
    fake.respond(() => ({ streamBytes: 50_000_000, headers: { 'content-length': '50000000' } }));
    const err = await failure(client({ maxResponseBytes: 10_000 }).fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('too_large');
    expect(err.message).toMatch(/50000000 bytes/);
    // Give an unhandled error from the abandoned body a chance to surface and fail the run.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fake.streamedBytes).toBeLessThan(10_000_000);
  });

  it('rejects with AbortedError, not a failure, when the caller aborts', async () => {
    fake.respond(() => ({ hang: true }));
    const controller = new AbortController();
    const pending = client().fetchStats({ scope: 'org', window: '24h' }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
  });

  it('aborts every request in flight under a signal, after many before them have come and gone', async () => {
    const controller = new AbortController();
    // The overall timer must not be what ends them.
    const api = client({ timeoutMs: 60_000 });
    for (let i = 0; i < 20; i++) await api.fetchStats({ scope: 'org', window: '24h' }, { signal: controller.signal });
    fake.respond(() => ({ hang: true }));
    const pending = [1, 2, 3].map(() => api.fetchStats({ scope: 'org', window: '24h' }, { signal: controller.signal }));
    await waitFor(() => fake.requests.length === 23);
    controller.abort();
    for (const request of pending) await expect(request).rejects.toBeInstanceOf(AbortedError);
  });

  it("adds one abort listener to a signal, not one per request: a request's objects must not outlive minor GCs", async () => {
    const controller = new AbortController();
    const other = new AbortController();
    const api = client();
    const before = getEventListeners(controller.signal, 'abort').length;
    for (let i = 0; i < 10; i++) await api.fetchStats({ scope: 'org', window: '24h' }, { signal: controller.signal });
    await api.fetchStats({ scope: 'org', window: '24h' }, { signal: other.signal });
    expect(getEventListeners(controller.signal, 'abort').length).toBe(before + 1);
    // A request under another signal reaches only that signal.
    expect(getEventListeners(other.signal, 'abort').length).toBe(1);
    // Once aborted, a signal stops what is sent under it before it reaches the API.
    controller.abort();
    const sent = fake.requests.length;
    await expect(api.fetchStats({ scope: 'org', window: '24h' }, { signal: controller.signal })).rejects.toBeInstanceOf(AbortedError);
    expect(fake.requests.length).toBe(sent);
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

describe('API retries', () => {
  it('retries a 5xx and succeeds on the next attempt', async () => {
    let n = 0;
    fake.respond(() => (++n === 1 ? { status: 502, body: 'bad gateway' } : { body: jsonFixture('api/ok.json') }));
    const response = await client({ retries: 2 }).fetchStats({ scope: 'org', window: '24h' });
    expect(response.series).toHaveLength(3);
    expect(fake.requests).toHaveLength(2);
  });

  it('retries a reset connection', async () => {
    let n = 0;
    fake.respond(() => (++n === 1 ? { reset: true } : { body: jsonFixture('api/ok.json') }));
    await client({ retries: 1 }).fetchStats({ scope: 'org', window: '24h' });
    expect(fake.requests).toHaveLength(2);
  });

  it('gives up after api.retries retries with the last failure', async () => {
    fake.respond(() => ({ status: 500, body: 'down' }));
    const err = await failure(client({ retries: 2 }).fetchStats({ scope: 'org', window: '24h' }));
    expect(err.reason).toBe('http_5xx');
    expect(fake.requests).toHaveLength(3);
  });

  it('never retries what cannot succeed: 4xx, 401, success:false, invalid bodies', async () => {
    for (const reply of [{ status: 400 }, { status: 401 }, { body: jsonFixture('api/api-error.json') }, { body: '<html>' }] as Reply[]) {
      fake.respond(() => reply);
      await failure(client({ retries: 3 }).fetchStats({ scope: 'org', window: '24h' }));
    }
    expect(fake.requests).toHaveLength(4);
  });

  it('backs off exponentially with full jitter', async () => {
    fake.respond(() => ({ status: 503 }));
    const clock = new FakeClock();
    await failure(client({ retries: 3, clock, random: () => 1 }).fetchStats({ scope: 'org', window: '24h' }));
    expect(clock.sleeps).toEqual([500, 1000, 2000]);
  });

  it('waits as long as Retry-After asks, in seconds or as an HTTP date', async () => {
    const clock = new FakeClock();
    let n = 0;
    const date = new Date(clock.now() + 7_000).toUTCString();
    fake.respond(() => (++n === 1 ? { status: 503, headers: { 'retry-after': '3' } } : n === 2 ? { status: 503, headers: { 'retry-after': date } } : { body: jsonFixture('api/ok.json') }));
    await client({ retries: 2, clock }).fetchStats({ scope: 'org', window: '24h' });
    expect(clock.sleeps[0]).toBe(3000);
    expect(clock.sleeps[1]).toBeGreaterThan(3000);
    expect(clock.sleeps[1]).toBeLessThanOrEqual(4000);
  });

  it('pauses every later request after a 429, not just the one that got it', async () => {
    const clock = new FakeClock();
    let n = 0;
    fake.respond(() => (++n === 1 ? { status: 429, headers: { 'retry-after': '30' } } : { body: jsonFixture('api/ok.json') }));
    const api = client({ retries: 0, clock });
    await failure(api.fetchStats({ scope: 'org', window: '24h' }));
    await api.fetchStats({ scope: 'workspace', id: 'other', window: '24h' });
    expect(clock.sleeps).toEqual([30_000]);
  });

  it('does not start a retry that would end after the deadline', async () => {
    const clock = new FakeClock();
    fake.respond(() => ({ status: 503, headers: { 'retry-after': '120' } }));
    const err = await failure(client({ retries: 5, clock }).fetchStats({ scope: 'org', window: '24h' }, { deadline: clock.now() + 60_000 }));
    expect(err.reason).toBe('http_5xx');
    expect(fake.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('parses Retry-After and caps it', () => {
    expect(parseRetryAfter('5', 0)).toBe(5000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('999999', 0)).toBe(3_600_000);
    expect(parseRetryAfter('soon', 0)).toBeUndefined();
    expect(parseRetryAfter(undefined, 0)).toBeUndefined();
  });
});

describe('API connection use', () => {
  it('keeps at most api.concurrency requests in flight', async () => {
    fake.respond(() => ({ body: jsonFixture('api/ok.json'), delayMs: 40 }));
    const api = client({ concurrency: 3 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => api.fetchStats({ scope: 'workspace', id: `ws-${i}`, window: '24h' })));
    expect(fake.requests).toHaveLength(12);
    expect(fake.maxConcurrent).toBe(3);
  });

  it('reuses keep-alive connections instead of opening one per request', async () => {
    const api = client({ concurrency: 2 });
    for (let i = 0; i < 20; i++) await api.fetchStats({ scope: 'org', window: '24h' });
    expect(fake.requests).toHaveLength(20);
    expect(fake.connections).toBeLessThanOrEqual(2);
  });

  it('parses no answer while the turn\'s shared share is spent, and parses it once the share is renewed', async () => {
    // The daemon's other long jobs have used this turn's share: the clock is past it, and the
    // check phase that renews it is run by hand.
    let now = 0;
    const checkPhase: (() => void)[] = [];
    const turns = new TurnBudget({ shareMs: 1, now: () => now, immediate: (callback) => void checkPhase.push(callback) });
    expect(turns.spent()).toBe(false);
    now = 5;
    let parsed = false;
    const polled = client({ turns })
      .fetchStats({ scope: 'org', window: '24h' })
      .then((result) => ((parsed = true), result));
    // The answer is in once the poll waits on the check phase: the renewal, then the poll.
    while (checkPhase.length < 2 && !parsed) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(fake.requests).toHaveLength(1);
    expect(parsed).toBe(false);
    for (const callback of checkPhase.splice(0)) callback();
    const result = await polled;
    expect(parsed).toBe(true);
    expect(result.series).toHaveLength(3);
  });

  it('spaces requests out to maxRequestsPerSecond', async () => {
    const clock = new FakeClock();
    const pacer = new Pacer(clock, 4);
    const start = clock.now();
    const starts: number[] = [];
    for (let i = 0; i < 4; i++) {
      await pacer.take(Number.POSITIVE_INFINITY);
      starts.push(clock.now() - start);
    }
    expect(starts).toEqual([0, 250, 500, 750]);
  });
});

describe('bucket selection', () => {
  const response = (series: number[], end?: number) => ({ meta: { end }, summary: [], series: series.map((ts) => ({ ts, fields: [] })) });

  it('publishes the greatest ts as the latest bucket, whatever the order', () => {
    expect(selectBucket(response([200, 300, 100]), 'latest', 100, 0)?.ts).toBe(300);
  });

  it('publishes the newest bucket that has ended by meta.end in complete mode', () => {
    expect(selectBucket(response([100, 200, 300], 350), 'complete', 100, 0)?.ts).toBe(200);
    expect(selectBucket(response([100, 200, 300], 400), 'complete', 100, 0)?.ts).toBe(300);
  });

  it('falls back to the current time when meta.end is absent', () => {
    expect(selectBucket(response([100, 200, 300]), 'complete', 100, 310)?.ts).toBe(200);
  });

  it('publishes nothing for an empty series', () => {
    expect(selectBucket(response([]), 'latest', 100, 0)).toBeUndefined();
  });
});
