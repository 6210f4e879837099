import { describe, expect, it } from 'vitest';
import { TurnBudget } from '../src/loop/turns.js';

/** A clock the test moves, and a check phase the test runs: the event loop, by hand. */
function loop() {
  let now = 0;
  let queue: (() => void)[] = [];
  const budget = new TurnBudget({ shareMs: 1, now: () => now, immediate: (callback) => void queue.push(callback) });
  return {
    budget,
    advance: (ms: number) => void (now += ms),
    /** Runs the callbacks queued before it started, as a check phase does; returns how many ran. */
    checkPhase: async () => {
      const due = queue;
      queue = [];
      for (const callback of due) {
        callback();
        await Promise.resolve(); // microtasks run between immediates
        await Promise.resolve();
      }
      return due.length;
    },
  };
}

describe('TurnBudget', () => {
  it('lets the first job of a turn run for the share, then tells it to yield', () => {
    const { budget, advance } = loop();
    expect(budget.spent()).toBe(false);
    advance(0.9);
    expect(budget.spent()).toBe(false);
    advance(0.2);
    expect(budget.spent()).toBe(true);
  });

  it('counts the work of every job in the turn against one share', () => {
    const { budget, advance } = loop();
    // A scrape's step and a rebuild's step in one turn: each alone is within the share,
    // together they are not, so the one that asks last yields.
    expect(budget.spent()).toBe(false); // the scrape
    advance(0.6);
    expect(budget.spent()).toBe(false); // the rebuild
    advance(0.6);
    expect(budget.spent()).toBe(true); // the scrape again
  });

  it('renews the share in the next check phase, before the jobs that yielded run', async () => {
    const { budget, advance, checkPhase } = loop();
    const seen: boolean[] = [];
    expect(budget.spent()).toBe(false);
    advance(2);
    expect(budget.spent()).toBe(true);
    void budget.next().then(() => seen.push(budget.spent()));
    await checkPhase();
    expect(seen).toEqual([false]);
  });

  it('keeps the share spent for I/O that lands before the check phase renews it', () => {
    const { budget, advance } = loop();
    budget.spent();
    advance(3); // timers and I/O of the next turn, the renewal still queued
    expect(budget.spent()).toBe(true);
  });

  it('lets every job make progress when several share the turns', async () => {
    const { budget, advance, checkPhase } = loop();
    const steps = { a: 0, b: 0 };
    // Two jobs, each a step of 0.4 ms then a look at the budget, as a scrape's body is sent.
    const job = async (name: 'a' | 'b', total: number) => {
      for (let i = 0; i < total; i++) {
        advance(0.4);
        steps[name]++;
        if (budget.spent()) await budget.next();
      }
    };
    const done = Promise.all([job('a', 10), job('b', 10)]);
    let phases = 0;
    while ((await checkPhase()) > 0) phases++;
    await done;
    expect(steps).toEqual({ a: 10, b: 10 });
    // Within one share per turn, twenty steps of 0.4 ms take several turns, not one.
    expect(phases).toBeGreaterThanOrEqual(5);
  });
});
