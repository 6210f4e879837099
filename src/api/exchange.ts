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
 * Sends requests and collects their answers through undici's handler API (dispatch), rather
 * than request(): no Readable, async iterator or combined AbortSignal per request. At
 * thousands of polls a minute those were most of a poll's CPU time and garbage, and the
 * garbage surviving young-generation collections is what grew the heap.
 *
 * A request makes no closure and adds no listener. Its signal gets one 'abort' listener, the
 * first time a request is sent under it, which aborts whatever is under way then; a request
 * only takes a slot in its signal's list and gives it back. A listener and closures per
 * request, as before, kept each request's objects alive through minor GCs, the socket's read
 * Buffer included: at 730 answers a second they were all promoted, 1.8 MB a second of
 * ArrayBuffers that only a mark-compact frees, and that external memory is what started most
 * mark-compacts while polls landed (docs/benchmarks-history.md, the eleventh session).
 */
export class Exchanges {
  readonly #bySignal = new WeakMap<AbortSignal, Slots>();

  /**
   * Sends one request. Settles exactly once: with the answer, or with the first of the
   * transport's error, the size cap, the overall timer or `signal` (rejecting with
   * `signal.reason`).
   */
  send(dispatcher: Dispatcher, request: Dispatcher.DispatchOptions, limits: ExchangeLimits, signal: AbortSignal | undefined): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const handler = new Collector(limits, resolve, reject);
      if (signal?.aborted) return handler.abort(signal.reason);
      if (signal !== undefined) handler.enter(this.#slotsOf(signal));
      try {
        dispatcher.dispatch(request, handler);
      } catch (err) {
        handler.abort(err);
      }
    });
  }

  #slotsOf(signal: AbortSignal): Slots {
    let slots = this.#bySignal.get(signal);
    if (slots === undefined) {
      const record: Slots = { handlers: [], free: [] };
      signal.addEventListener('abort', () => {
        for (const handler of record.handlers) handler?.abort(signal.reason);
      }, { once: true });
      this.#bySignal.set(signal, (slots = record));
    }
    return slots;
  }
}

/** The requests under way under one signal; a finished one's slot is reused. */
interface Slots {
  readonly handlers: (Collector | undefined)[];
  readonly free: number[];
}

/** The overall timer's callback: a function of its own, not a closure per request. */
function timeOut(handler: Collector, timeoutMs: number): void {
  handler.abort(new ExchangeTimeout(timeoutMs));
}

/** The dispatch handler: gathers the body under the cap and settles the exchange's promise. */
class Collector implements Dispatcher.DispatchHandler {
  readonly #timer: NodeJS.Timeout;
  #slots: Slots | undefined;
  #slot = 0;
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

  constructor(limits: ExchangeLimits, resolve: (answer: Answer) => void, reject: (err: unknown) => void) {
    this.#max = limits.maxResponseBytes;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#timer = setTimeout(timeOut, limits.timeoutMs, this, limits.timeoutMs);
  }

  /** Takes a slot in the signal's list, so that its abort reaches this request. */
  enter(slots: Slots): void {
    this.#slots = slots;
    this.#slot = slots.free.pop() ?? slots.handlers.length;
    slots.handlers[this.#slot] = this;
  }

  /** Stops the timer and gives the slot back: the request is settled. */
  #leave(): void {
    clearTimeout(this.#timer);
    if (this.#slots === undefined) return;
    this.#slots.handlers[this.#slot] = undefined;
    this.#slots.free.push(this.#slot);
    this.#slots = undefined;
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
    this.#leave();
    const body = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#size);
    this.#resolve({ status: this.#status, headers: this.#headers, body });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#fail(err);
  }

  #fail(err: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#leave();
    this.#chunks.length = 0;
    this.#reject(err);
  }
}
