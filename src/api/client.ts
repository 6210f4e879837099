import type { Dispatcher } from 'undici';
import type { TokenSource } from './token.js';
import { AbortedError, FlashbackApiError } from './errors.js';
import { clip, parseStatsBody, type StatsResponse } from './response.js';
import { Pacer, Semaphore, systemClock, type Clock } from './limiter.js';
import { Exchanges, ExchangeTimeout, type Answer } from './exchange.js';
import { TurnBudget } from '../loop/turns.js';

/** The query of one poll, with the parameter names of the API reference. */
export interface StatsQuery {
  readonly scope: 'org' | 'workspace' | 'repo';
  readonly id?: string | undefined;
  readonly window: string;
  readonly timeBucketSize?: string | undefined;
  readonly model?: string | undefined;
  readonly userId?: string | undefined;
  readonly apiKeyId?: string | undefined;
  readonly aiLlmId?: string | undefined;
}

const QUERY_KEYS = ['scope', 'id', 'window', 'timeBucketSize', 'model', 'userId', 'apiKeyId', 'aiLlmId'] as const;

/** The `api` section of the config, and what the client is given instead of reaching for globals. */
export interface ApiClientOptions {
  readonly baseUrl: string;
  /** An undici Agent (keep-alive pool) shared by every request; closed by its owner. */
  readonly dispatcher: Dispatcher;
  /** Called before every request, so a rotated token is picked up without a restart. */
  readonly token: TokenSource;
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly retries: number;
  readonly maxResponseBytes: number;
  readonly maxRequestsPerSecond?: number | undefined;
  readonly userAgent: string;
  readonly clock?: Clock;
  readonly random?: () => number;
  /** Observes every HTTP answer (for flashback_exporter_api_requests_total). */
  readonly onResponse?: (status: number) => void;
  /** Observes every retry, for a debug log line. */
  readonly onRetry?: (error: FlashbackApiError, attempt: number, delayMs: number) => void;
  /** The share of each event-loop turn that parsing answers takes, with the daemon's other long jobs. */
  readonly turns?: TurnBudget;
}

/** Per poll: how it may be cut short. */
export interface FetchOptions {
  /** Aborts the poll (shutdown, reload): the promise rejects with AbortedError. */
  readonly signal?: AbortSignal;
  /** Epoch ms after which no retry starts: a unit's next tick. */
  readonly deadline?: number;
}

/** A client for GET /v2/stats/private-chat. */
export interface ApiClient {
  fetchStats(query: StatsQuery, options?: FetchOptions): Promise<StatsResponse>;
  /** Requests holding a concurrency slot right now. */
  readonly inFlight: number;
}

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
// A Retry-After beyond this is treated as this: a poll should report, not sleep for hours.
const RETRY_AFTER_CAP_MS = 3_600_000;

/**
 * Creates the API client: bounded concurrency, per-request timeout, streamed body size cap,
 * and retries of transient failures with exponential backoff and full jitter that honour
 * Retry-After and never run past the caller's deadline.
 */
export function createApiClient(options: ApiClientOptions): ApiClient {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const slots = new Semaphore(options.concurrency);
  const pacer = new Pacer(clock, options.maxRequestsPerSecond);
  const turns = options.turns ?? new TurnBudget();
  const base = new URL(options.baseUrl.endsWith('/') ? options.baseUrl : `${options.baseUrl}/`);
  const exchanges = new Exchanges();

  function urlFor(query: StatsQuery): URL {
    const url = new URL('v2/stats/private-chat', base);
    for (const key of QUERY_KEYS) {
      const value = query[key];
      if (value !== undefined && value !== '') url.searchParams.set(key, value);
    }
    return url;
  }

  async function attempt(url: URL, signal: AbortSignal | undefined): Promise<StatsResponse> {
    await slots.acquire(signal);
    let answer: Answer;
    try {
      // A string when the source has one ready: no await between getting the slot and
      // sending, so the request leaves before this turn of the event loop goes on.
      const pending = options.token();
      const token = typeof pending === 'string' ? pending : await pending;
      answer = await exchanges.send(
        options.dispatcher,
        {
          origin: url.origin,
          path: url.pathname + url.search,
          method: 'GET',
          headers: { authorization: `Bearer ${token}`, accept: 'application/json', 'user-agent': options.userAgent },
          // exchanges.send() times the whole exchange; undici's own timers would only duplicate it,
          // and they linger in its timer list for up to a second after the answer, long enough
          // to outlive minor GCs: a timer object promoted per request.
          headersTimeout: 0,
          bodyTimeout: 0,
        },
        { timeoutMs: options.timeoutMs, maxResponseBytes: options.maxResponseBytes },
        signal,
      );
    } catch (err) {
      if (signal?.aborted) throw new AbortedError({ cause: err });
      if (err instanceof FlashbackApiError) throw err;
      if (err instanceof ExchangeTimeout) throw new FlashbackApiError('timeout', err.message, { cause: err });
      throw classifyTransportError(err);
    } finally {
      // The slot bounds requests on the wire, not the work after them: the next request
      // leaves now, while this answer waits its turn to be parsed.
      slots.release();
    }
    options.onResponse?.(answer.status);
    // Answers that arrived together are read together, and each one's next request sent,
    // before any of them is parsed: parsing one must not hold back the others' next requests
    // (a wave of answers would otherwise add its whole parse time to every round trip).
    await new Promise((resolve) => setImmediate(resolve));
    // A wave that piled up behind a GC pause is parsed, and its values stored, within the
    // turn's shared share: all at once, it would add its whole parse time to a turn that the
    // pause already made long.
    if (turns.spent()) await turns.next();
    if (signal?.aborted) throw new AbortedError({ cause: signal.reason });
    return interpret(answer.status, answer.headers, answer.body, clock.now());
  }

  async function fetchStats(query: StatsQuery, fetchOptions: FetchOptions = {}): Promise<StatsResponse> {
    const { signal, deadline = Number.POSITIVE_INFINITY } = fetchOptions;
    const url = urlFor(query);
    for (let n = 0; ; n++) {
      if (!(await pacer.take(deadline, signal))) {
        throw new FlashbackApiError('rate_limited', 'the API asked to slow down and the next attempt would start after this poll\'s deadline');
      }
      try {
        return await attempt(url, signal);
      } catch (err) {
        if (!(err instanceof FlashbackApiError)) throw err;
        if (err.reason === 'rate_limited') pacer.pause(clock.now() + (err.retryAfterMs ?? backoff(n)));
        if (!err.transient || n >= options.retries) throw err;
        const delay = Math.max(err.retryAfterMs ?? 0, backoff(n));
        if (clock.now() + delay > deadline) throw err;
        options.onRetry?.(err, n + 1, delay);
        await clock.sleep(delay, signal);
      }
    }
  }

  function backoff(attemptIndex: number): number {
    return Math.round(random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attemptIndex));
  }

  return {
    fetchStats,
    get inFlight() {
      return slots.inUse;
    },
  };
}

function interpret(status: number, headers: Answer['headers'], body: Buffer, now: number): StatsResponse {
  if (status >= 200 && status < 300) {
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new FlashbackApiError('invalid_response', `response body is not JSON: ${clip(body.toString('utf8'), 80) || 'empty'}`, { cause: err, status });
    }
    return parseStatsBody(json);
  }
  const detail = errorDetail(body);
  const retryAfterMs = parseRetryAfter(headers['retry-after'], now);
  const options = { status, retryAfterMs };
  if (status === 401 || status === 403) {
    throw new FlashbackApiError('unauthorized', `the API rejected the token (HTTP ${status})${detail}`, options);
  }
  if (status === 429) throw new FlashbackApiError('rate_limited', `rate limited by the API (HTTP 429)${detail}`, options);
  if (status >= 500) throw new FlashbackApiError('http_5xx', `HTTP ${status}${detail}`, options);
  if (status >= 400) throw new FlashbackApiError('http_4xx', `HTTP ${status}${detail}`, options);
  throw new FlashbackApiError('invalid_response', `unexpected HTTP status ${status}`, options);
}

/** The API's own `message`, when an error body carries one (HTML error pages do not). */
function errorDetail(body: Buffer): string {
  try {
    const json = JSON.parse(body.toString('utf8')) as { message?: unknown };
    if (typeof json?.message === 'string') return `: ${clip(json.message)}`;
  } catch {
    // Not JSON: a proxy's HTML page says nothing useful in one line.
  }
  return '';
}

/** Retry-After in seconds or as an HTTP date (RFC 9110 §10.2.3), in ms from now. */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return undefined;
  const ms = /^\d+$/.test(text.trim()) ? Number(text.trim()) * 1000 : Date.parse(text) - now;
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), RETRY_AFTER_CAP_MS) : undefined;
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function classifyTransportError(err: unknown): FlashbackApiError {
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) {
    return new FlashbackApiError('timeout', `timed out: ${message}`, { cause: err });
  }
  return new FlashbackApiError('network', `${typeof code === 'string' ? `${code}: ` : ''}${message}`, { cause: err });
}
