import { createTask, type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { PollUnit } from '../config/units.js';
import type { PollFn } from './poll.js';

/** What the scheduler runs, and what it runs with: a poll function, so tests can time units without HTTP. */
export interface SchedulerOptions {
  readonly poll: PollFn;
  readonly log: Logger;
  readonly now?: () => number;
  /**
   * How many polls may be under way at once; the rest wait in a queue. Read at every start,
   * so a reload that changes api.concurrency applies at once. Unbounded by default.
   */
  readonly maxActive?: () => number;
}

interface Group {
  readonly task: ScheduledTask;
  readonly entries: Map<string, Entry>;
}

/** A unit as the scheduler keeps it, from the reload that adds it to the one that removes it. */
interface Entry {
  readonly unit: PollUnit;
  /**
   * Aborts the unit's poll when a reload removes the unit or the scheduler stops: one for the
   * unit's life, not one per poll. Made per poll, ten thousand signals a round outlived minor
   * GCs (with their tables of listeners: 1.5–2.5 MB promoted a round, the largest share of
   * what starts mark-compacts while polls land).
   */
  readonly controller: AbortController;
  /** The round that is to start its poll, while it waits for a free slot. */
  round: Round | undefined;
  /** Its poll under way, settling to whether it succeeded. */
  done: Promise<boolean> | undefined;
}

/**
 * A listener that stays on every unit's signal. A request adds a listener and removes it when
 * answered; when the last one goes, node drops the signal's table of listeners, and makes it
 * again for the next request: a new table each time, for a signal that lives as long as the
 * unit, so each one outlived minor GCs.
 */
const KEEP_LISTENERS = (): void => {};

/** One tick's units, or a reload's new ones: started in order as slots free up. */
interface Round {
  /** Walks the units the round was made for; it starts those still marked with it. */
  readonly entries: Iterator<Entry>;
  /** Epoch ms of the group's next tick: a poll, retries included, must end by then. */
  readonly deadline: number;
}

/**
 * Polls every unit once at once, then on its cron schedule. Units sharing a schedule share
 * one node-cron task, so ten thousand units cost a handful of timers. A tick only marks its
 * units with a round; polls start as earlier ones finish, the round walking its group's units
 * in order, so a large round allocates nothing per unit: a queue entry per unit per round
 * lived for most of the round, was promoted, and was a share of the garbage that starts
 * mark-compacts while polls land. A unit is never polled twice at the same time: a tick that
 * finds it marked by an earlier round or running skips it.
 */
export class Scheduler {
  readonly #poll: PollFn;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #maxActive: () => number;
  readonly #groups = new Map<string, Group>();
  /** Rounds with units still to start, oldest first. */
  readonly #rounds: Round[] = [];
  /** Units marked with a round and not started yet. */
  #queued = 0;
  /** Polls under way. */
  #running = 0;
  /**
   * Units removed by a reload whose aborted poll is still settling, by key: one added again
   * meanwhile waits for it. A Map of every running poll would make and drop a table entry per
   * poll, its tables promoted as the signals' were.
   */
  readonly #settling = new Map<string, Entry>();
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;
  #stopped = false;

  constructor(options: SchedulerOptions) {
    this.#poll = options.poll;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#maxActive = options.maxActive ?? (() => Number.POSITIVE_INFINITY);
  }

  /**
   * Makes `units` the set being polled. Units with an unchanged key keep their schedule and
   * any poll in flight; removed units' polls are aborted; new units are polled at once.
   */
  setUnits(units: readonly PollUnit[]): { added: number; removed: number; kept: number } {
    const wanted = new Set(units.map((u) => u.key));
    let removed = 0;
    for (const [schedule, group] of this.#groups) {
      for (const [key, entry] of group.entries) {
        if (wanted.has(key)) continue;
        group.entries.delete(key);
        if (entry.round !== undefined) (entry.round = undefined), this.#queued--;
        if (entry.done !== undefined) {
          entry.controller.abort(new Error('unit removed by a reload'));
          this.#settling.set(key, entry);
        }
        removed++;
      }
      if (group.entries.size === 0) {
        void group.task.destroy();
        this.#groups.delete(schedule);
      }
    }
    const added = new Map<Group, Entry[]>();
    for (const unit of units) {
      const schedule = unit.target.schedule;
      let group = this.#groups.get(schedule);
      if (group?.entries.has(unit.key)) continue;
      if (group === undefined) this.#groups.set(schedule, (group = this.#createGroup(schedule)));
      const entry: Entry = { unit, controller: new AbortController(), round: undefined, done: undefined };
      entry.controller.signal.addEventListener('abort', KEEP_LISTENERS);
      group.entries.set(unit.key, entry);
      let list = added.get(group);
      if (list === undefined) added.set(group, (list = []));
      list.push(entry);
    }
    let count = 0;
    for (const [group, list] of added) {
      count += list.length;
      if (!this.#stopped) this.#start(group, () => list.values());
    }
    this.#settle();
    return { added: count, removed, kept: units.length - count };
  }

  /** Resolves once nothing is queued or running: after the first round, for tests and --once. */
  async idle(): Promise<void> {
    if (this.#queued === 0 && this.#running === 0) return;
    const idle = (this.#idle ??= Promise.withResolvers<void>());
    await idle.promise;
  }

  /** Stops every timer, drops the rounds and aborts polls in flight; resolves when they settle. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const running = [...this.#settling.values()];
    for (const group of this.#groups.values()) {
      await group.task.destroy();
      for (const entry of group.entries.values()) if (entry.done !== undefined) running.push(entry);
    }
    this.#groups.clear();
    this.#rounds.length = 0;
    this.#queued = 0;
    for (const { controller } of running) controller.abort(new Error('shutting down'));
    await Promise.all(running.map((entry) => entry.done));
    this.#settle();
  }

  #createGroup(schedule: string): Group {
    const group: Group = {
      entries: new Map(),
      task: createTask(schedule, () => this.#tick(group), {
        name: `poll ${schedule}`,
        // node-cron would otherwise print to the console; a missed tick is ours to report.
        logger: { info: () => {}, warn: () => {}, debug: () => {}, error: (m: unknown) => this.#log.error({ err: String(m) }, 'cron error') },
        suppressMissedWarning: true,
      }),
    };
    void group.task.start();
    return group;
  }

  #tick(group: Group): void {
    if (this.#stopped) return;
    const skipped = this.#start(group, () => group.entries.values());
    if (skipped > 0) {
      this.#log.warn(
        { schedule: group.task.getPattern(), skipped, units: group.entries.size },
        'units still polling from an earlier tick were skipped; the schedule may be too tight for api.concurrency',
      );
    }
  }

  /**
   * Makes a round of the units `entries` walks, marking those neither waiting for an earlier
   * round nor running (a field set on each: 10,000 units take well under a millisecond), and
   * starts what slots are free. Returns how many units were skipped.
   */
  #start(group: Group, entries: () => Iterator<Entry>): number {
    const round: Round = { entries: entries(), deadline: group.task.getNextRun()?.getTime() ?? this.#now() + 60_000 };
    let skipped = 0;
    let marked = 0;
    for (let it = entries(), next = it.next(); !next.done; next = it.next()) {
      const entry = next.value;
      if (entry.round !== undefined || entry.done !== undefined) skipped++;
      else (entry.round = round), marked++;
    }
    // A tick that found every unit busy leaves no round to walk.
    if (marked > 0) this.#rounds.push(round);
    this.#queued += marked;
    this.#pump();
    return skipped;
  }

  #pump(): void {
    const max = this.#maxActive();
    while (this.#running < max && this.#rounds.length > 0) {
      const round = this.#rounds[0]!;
      const next = round.entries.next();
      if (next.done) {
        this.#rounds.shift();
        continue;
      }
      const entry = next.value;
      // Not this round's: skipped at its tick, removed by a reload, or added since.
      if (entry.round !== round) continue;
      entry.round = undefined;
      this.#queued--;
      // A unit a reload removed and added again while its aborted poll is still settling.
      if (this.#settling.has(entry.unit.key)) continue;
      this.#launch(entry, round.deadline);
    }
    this.#settle();
  }

  #launch(entry: Entry, deadline: number): void {
    const { unit } = entry;
    this.#running++;
    entry.done = this.#poll(unit, { signal: entry.controller.signal, deadline }).finally(() => {
      entry.done = undefined;
      this.#running--;
      if (this.#settling.get(unit.key) === entry) this.#settling.delete(unit.key);
      if (!this.#stopped) this.#pump();
      else this.#settle();
    });
  }

  #settle(): void {
    if (this.#queued === 0 && this.#running === 0 && this.#idle !== undefined) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }
}
