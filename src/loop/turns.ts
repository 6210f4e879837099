/** What a TurnBudget needs from its surroundings; tests pass their own. */
export interface TurnBudgetOptions {
  /** The chunked work one turn of the event loop may run, all of it together, in ms. */
  readonly shareMs?: number;
  /** A monotonic clock in ms. */
  readonly now?: () => number;
  /** Runs a callback in the check phase of the event loop, after I/O: setImmediate. */
  readonly immediate?: (callback: () => void) => void;
}

/**
 * The share of an event-loop turn that the exporter's long jobs take together: a scrape's body,
 * a snapshot's rebuild, a wave of answers' parsing. Each yielded after 2 ms of its own before, so two
 * scrapes and a rebuild in flight held the loop 6–13 ms in one turn, one step after another;
 * sharing one budget bounds the turn, whatever runs at once. One instance is made by whoever
 * wires the daemon and passed to each job's owner.
 *
 * A turn's share starts when a job first asks in it. It is renewed in the next check phase, by
 * an immediate queued at that moment: ahead of the jobs that yield after it, so they start the
 * new share. A job that asks in the I/O phase of a turn after its share was used elsewhere is
 * told to yield, and goes on in the check phase. So the jobs run at most about twice the share in
 * one turn (its I/O phase and its check phase), and a job always makes one step between two
 * questions, so none starves.
 */
export class TurnBudget {
  readonly #shareMs: number;
  readonly #now: () => number;
  readonly #immediate: (callback: () => void) => void;
  #startedAt = -1;
  readonly #renew = () => {
    this.#startedAt = -1;
  };

  constructor(options: TurnBudgetOptions = {}) {
    this.#shareMs = options.shareMs ?? 1;
    this.#now = options.now ?? (() => performance.now());
    this.#immediate = options.immediate ?? ((callback) => void setImmediate(callback));
  }

  /** True once the jobs of this turn have run for its share: the caller then awaits `next()`. */
  spent(): boolean {
    const now = this.#now();
    if (this.#startedAt < 0) {
      this.#startedAt = now;
      this.#immediate(this.#renew);
    }
    return now - this.#startedAt > this.#shareMs;
  }

  /** Resolves in the check phase, after the timers and I/O that waited meanwhile. */
  next(): Promise<void> {
    return new Promise((resolve) => this.#immediate(resolve));
  }
}
