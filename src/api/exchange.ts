import type { Dispatcher } from 'undici';
import { FlashbackApiError } from './errors.js';

/** A complete answer: its status, headers and whole body. */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** Bounds on one HTTP exchange, so that a slow or oversized answer costs a poll, not the process. */
export interface ExchangeLimits {
  /** The whole exchange, from dispatch to the last byte, must fit in this. */
  readonly timeoutMs: number;
  /** A body larger than this is cut off as it streams in, and the connection dropped. */
  readonly maxResponseBytes: number;
}

/** The overall timer ran out; the caller turns this into a `timeout` failure. */
export class ExchangeTimeout extends Error {
  constructor(timeoutMs: number) {
    super(`no complete answer within ${timeoutMs / 1000}s`);
    this.name = 'ExchangeTimeout';
  }
}

/**
 * Sends one request and collects its answer through undici's handler API (dispatch),
 * rather than request(): no Readable, async iterator or combined AbortSignal per request.
 * At thousands of polls a minute those were most of a poll's CPU time and garbage, and
 * the garbage surviving young-generation collections is what grew the heap.
 *
 * Settles exactly once: with the answer, or with the first of the transport's error, the
 * size cap, the overall timer or `signal` (rejecting with `signal.reason`).
 */
export function exchange(
  dispatcher: Dispatcher,
  request: Dispatcher.DispatchOptions,
  limits: ExchangeLimits,
  signal: AbortSignal | undefined,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const handler = new Collector(limits.maxResponseBytes, resolve, reject);
    if (signal?.aborted) return handler.abort(signal.reason);
    const onAbort = () => handler.abort(signal!.reason);
    const timer = setTimeout(() => handler.abort(new ExchangeTimeout(limits.timeoutMs)), limits.timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    handler.cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    try {
      dispatcher.dispatch(request, handler);
    } catch (err) {
      handler.abort(err);
    }
  });
}

/** The dispatch handler: gathers the body under the cap and settles the exchange's promise. */
class Collector implements Dispatcher.DispatchHandler {
  cleanup: () => void = () => {};
  #controller: Dispatcher.DispatchController | undefined;
  #abortReason: unknown;
  #settled = false;
  #status = 0;
  #headers: Answer['headers'] = {};
  readonly #chunks: Buffer[] = [];
  #size = 0;
  readonly #max: number;
  readonly #resolve: (answer: Answer) => void;
  readonly #reject: (err: unknown) => void;

  constructor(max: number, resolve: (answer: Answer) => void, reject: (err: unknown) => void) {
    this.#max = max;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Fails the exchange now and tells undici to drop the request, wherever it is. */
  abort(reason: unknown): void {
    this.#fail(reason);
    if (this.#controller !== undefined) this.#controller.abort(reason as Error);
    else this.#abortReason ??= reason;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // Aborted while it waited for a connection: never send it.
    if (this.#abortReason !== undefined) controller.abort(this.#abortReason as Error);
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: Answer['headers']): void {
    if (status < 200) return; // 1xx: the real answer follows
    this.#status = status;
    this.#headers = headers;
    const declared = Number(headers['content-length']);
    if (Number.isFinite(declared) && declared > this.#max) {
      this.abort(new FlashbackApiError('too_large', `response of ${declared} bytes exceeds api.maxResponseBytes (${this.#max})`, { status }));
    }
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#size > this.#max) {
      this.abort(new FlashbackApiError('too_large', `response exceeds api.maxResponseBytes (${this.#max} bytes)`, { status: this.#status }));
      return;
    }
    this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.cleanup();
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#size);
    this.#resolve({ status: this.#status, headers: this.#headers, body });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#fail(err);
  }

  #fail(err: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.cleanup();
    this.#chunks.length = 0;
    this.#reject(err);
  }
}
