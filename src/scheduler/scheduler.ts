import { createTask, type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { PollUnit } from '../config/units.js';
import type { PollFn } from './poll.js';
import { TurnBudget } from '../loop/turns.js';

export interface SchedulerOptions {
  readonly poll: PollFn;
  readonly log: Logger;
  readonly now?: () => number;
  /**
   * How many polls may be under way at once; the rest wait in a queue. Read at every start,
   * so a reload that changes api.concurrency applies at once. Unbounded by default.
   */
  readonly maxActive?: () => number;
  /** The turn's share of chunked work, shared with the store and the scrapes; the scheduler's own when not given. */
  readonly turns?: TurnBudget;
}

// Units a tick queues between two looks at the clock.
const ENQUEUE_BATCH = 64;

interface Group {
  readonly task: ScheduledTask;
  readonly units: Map<string, PollUnit>;
}

interface Pending {
  readonly unit: PollUnit;
  readonly group: Group;
  /** Epoch ms of the unit's next tick: its poll, retries included, must end by then. */
  readonly deadline: number;
}

/**
 * Polls every unit once at once, then on its cron schedule. Units sharing a schedule share
 * one node-cron task, so ten thousand units cost a handful of timers. A tick only queues its
 * units; polls start from the queue as earlier ones finish, so a large round costs a queue
 * entry per unit instead of ten thousand requests waiting at once. A unit is never polled
 * twice at the same time: a tick that finds it queued or running skips it.
 */
export class Scheduler {
  readonly #poll: PollFn;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #maxActive: () => number;
  readonly #turns: TurnBudget;
  readonly #groups = new Map<string, Group>();
  /** Units queued or running, by key: the no-overlap rule. */
  readonly #busy = new Set<string>();
  readonly #queue: Pending[] = [];
  #queueHead = 0;
  readonly #running = new Map<string, { controller: AbortController; done: Promise<boolean> }>();
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Ticks still putting their units in the queue (see #enqueue). */
  #enqueuing = 0;
  #stopped = false;

  constructor(options: SchedulerOptions) {
    this.#poll = options.poll;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#maxActive = options.maxActive ?? (() => Number.POSITIVE_INFINITY);
    this.#turns = options.turns ?? new TurnBudget();
  }

  /**
   * Makes `units` the set being polled. Units with an unchanged key keep their schedule and
   * any poll in flight; removed units' polls are aborted; new units are polled at once.
   */
  setUnits(units: readonly PollUnit[]): { added: number; removed: number; kept: number } {
    const wanted = new Set(units.map((u) => u.key));
    let removed = 0;
    for (const [schedule, group] of this.#groups) {
      for (const key of group.units.keys()) {
        if (wanted.has(key)) continue;
        group.units.delete(key);
        this.#running.get(key)?.controller.abort(new Error('unit removed by a reload'));
        removed++;
      }
      if (group.units.size === 0) {
        void group.task.destroy();
        this.#groups.delete(schedule);
      }
    }
    const added = new Map<Group, PollUnit[]>();
    for (const unit of units) {
      const schedule = unit.target.schedule;
      let group = this.#groups.get(schedule);
      if (group?.units.has(unit.key)) continue;
      if (group === undefined) this.#groups.set(schedule, (group = this.#createGroup(schedule)));
      group.units.set(unit.key, unit);
      let list = added.get(group);
      if (list === undefined) added.set(group, (list = []));
      list.push(unit);
    }
    let count = 0;
    for (const [group, list] of added) {
      count += list.length;
      if (!this.#stopped) this.#enqueue(group, list.values());
    }
    return { added: count, removed, kept: units.length - count };
  }

  /** Resolves once nothing is queued or running: after the first round, for tests and --once. */
  async idle(): Promise<void> {
    if (this.#busy.size === 0 && this.#enqueuing === 0) return;
    const idle = (this.#idle ??= Promise.withResolvers<void>());
    await idle.promise;
  }

  /** Stops every timer, drops the queue and aborts polls in flight; resolves when they settle. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const group of this.#groups.values()) await group.task.destroy();
    this.#groups.clear();
    for (let i = this.#queueHead; i < this.#queue.length; i++) this.#busy.delete(this.#queue[i]!.unit.key);
    this.#queue.length = this.#queueHead = 0;
    for (const { controller } of this.#running.values()) controller.abort(new Error('shutting down'));
    await Promise.all([...this.#running.values()].map((r) => r.done));
    this.#settle();
  }

  #createGroup(schedule: string): Group {
    const group: Group = {
      units: new Map(),
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
    this.#enqueue(group, group.units.values(), (skipped) => {
      this.#log.warn(
        { schedule: group.task.getPattern(), skipped, units: group.units.size },
        'units still polling from an earlier tick were skipped; the schedule may be too tight for api.concurrency',
      );
    });
  }

  /**
   * Queues the units of a group that are not already queued or running, and tells `onSkipped`
   * how many were. Ten thousand units take about 20 ms to queue; done in one go at a tick, that
   * held the event loop (scrapes included) for all of it, so it goes in steps within the turn's
   * share of work, polls starting from the first step on. A Map's iterator survives the steps:
   * units a reload removes meanwhile are not reached.
   */
  #enqueue(group: Group, units: Iterator<PollUnit>, onSkipped?: (skipped: number) => void): void {
    const deadline = group.task.getNextRun()?.getTime() ?? this.#now() + 60_000;
    let skipped = 0;
    this.#enqueuing++;
    const step = () => {
      for (let n = 1; !this.#stopped; n++) {
        const next = units.next();
        if (next.done) break;
        const unit = next.value;
        if (this.#busy.has(unit.key)) skipped++;
        else {
          this.#busy.add(unit.key);
          this.#queue.push({ unit, group, deadline });
        }
        if (n % ENQUEUE_BATCH === 0 && this.#turns.spent()) {
          this.#pump();
          void this.#turns.next().then(step);
          return;
        }
      }
      this.#enqueuing--;
      if (skipped > 0 && !this.#stopped) onSkipped?.(skipped);
      this.#pump();
    };
    step();
  }

  #pump(): void {
    const max = this.#maxActive();
    while (this.#running.size < max && this.#queueHead < this.#queue.length) {
      const next = this.#queue[this.#queueHead++]!;
      // A reload may have removed the unit while it waited.
      if (next.group.units.get(next.unit.key) !== next.unit) this.#busy.delete(next.unit.key);
      else this.#launch(next);
    }
    // Drop what has been taken from the front, now and then, so the array never grows unbounded.
    if (this.#queueHead === this.#queue.length) this.#queue.length = this.#queueHead = 0;
    else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) this.#queue.splice(0, this.#queueHead), (this.#queueHead = 0);
    this.#settle();
  }

  #launch({ unit, deadline }: Pending): void {
    const controller = new AbortController();
    const done = this.#poll(unit, { signal: controller.signal, deadline }).finally(() => {
      this.#running.delete(unit.key);
      this.#busy.delete(unit.key);
      if (!this.#stopped) this.#pump();
      else this.#settle();
    });
    this.#running.set(unit.key, { controller, done });
  }

  #settle(): void {
    if (this.#busy.size === 0 && this.#enqueuing === 0 && this.#idle !== undefined) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }
}
