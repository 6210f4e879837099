import { AbortedError } from './errors.js';

/** Bounds how many requests are in flight at once; waiters are served first come, first served. */
export class Semaphore {
  readonly #size: number;
  #inUse = 0;
  readonly #waiters: { resolve: () => void; signal: AbortSignal | undefined; onAbort: () => void }[] = [];

  constructor(size: number) {
    this.#size = size;
  }

  /** Requests currently holding a slot. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Resolves once a slot is free; rejects with AbortedError if the signal fires first. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(new AbortedError({ cause: signal.reason }));
    if (this.#inUse < this.#size) {
      this.#inUse++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve,
        signal,
        onAbort: () => {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          reject(new AbortedError({ cause: signal?.reason }));
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Hands the slot straight to the next waiter, or frees it. */
  release(): void {
    const next = this.#waiters.shift();
    if (next === undefined) {
      this.#inUse--;
      return;
    }
    next.signal?.removeEventListener('abort', next.onAbort);
    next.resolve();
  }
}

/** Clock and timers, injected so tests can control time. */
export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError({ cause: signal.reason }));
      const onAbort = () => {
        clearTimeout(timer);
        reject(new AbortedError({ cause: signal?.reason }));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/**
 * Paces request starts across every unit: an optional ceiling on requests per second, and
 * a shared pause after a 429, so one rate-limited answer slows everyone down instead of
 * each unit finding the limit on its own.
 */
export class Pacer {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  #nextSlot = 0;
  #pausedUntil = 0;

  constructor(clock: Clock, maxRequestsPerSecond: number | undefined) {
    this.#clock = clock;
    this.#intervalMs = maxRequestsPerSecond === undefined ? 0 : 1000 / maxRequestsPerSecond;
  }

  /** Holds every request back until `until` (epoch ms); a later pause extends an earlier one. */
  pause(until: number): void {
    this.#pausedUntil = Math.max(this.#pausedUntil, until);
  }

  /** When the shared pause ends, in epoch ms (0 when never paused). */
  get pausedUntil(): number {
    return this.#pausedUntil;
  }

  /**
   * Waits for this request's turn. Returns false without waiting when the turn would
   * come after `deadline`: the caller should give up rather than overrun its schedule.
   */
  async take(deadline: number, signal?: AbortSignal): Promise<boolean> {
    const now = this.#clock.now();
    const start = Math.max(now, this.#pausedUntil, this.#nextSlot);
    if (start > deadline) return false;
    if (this.#intervalMs > 0) this.#nextSlot = start + this.#intervalMs;
    if (start > now) await this.#clock.sleep(start - now, signal);
    // A pause may have been extended while this request slept.
    if (this.#pausedUntil > this.#clock.now()) return this.take(deadline, signal);
    return true;
  }
}
