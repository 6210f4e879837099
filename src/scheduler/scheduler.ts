import { createTask, type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { PollUnit } from '../config/units.js';
import type { PollFn } from './poll.js';

export interface SchedulerOptions {
  readonly poll: PollFn;
  readonly log: Logger;
  readonly now?: () => number;
}

interface Group {
  readonly task: ScheduledTask;
  readonly units: Map<string, PollUnit>;
}

/**
 * Polls every unit once at once, then on its cron schedule. Units sharing a schedule share
 * one node-cron task, so ten thousand units cost a handful of timers. A unit is never
 * polled twice at the same time: a tick that finds it still running skips it.
 */
export class Scheduler {
  readonly #poll: PollFn;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #groups = new Map<string, Group>();
  readonly #running = new Map<string, { controller: AbortController; done: Promise<boolean> }>();
  #stopped = false;

  constructor(options: SchedulerOptions) {
    this.#poll = options.poll;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Makes `units` the set being polled. Units with an unchanged key keep their schedule and
   * any poll in flight; removed units' polls are aborted; new units are polled at once.
   */
  setUnits(units: readonly PollUnit[]): { added: number; removed: number; kept: number } {
    const wanted = new Map(units.map((u) => [u.key, u]));
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
    const added: PollUnit[] = [];
    for (const unit of units) {
      const schedule = unit.target.schedule;
      let group = this.#groups.get(schedule);
      if (group?.units.has(unit.key)) continue;
      if (group === undefined) this.#groups.set(schedule, (group = this.#createGroup(schedule)));
      group.units.set(unit.key, unit);
      added.push(unit);
    }
    if (!this.#stopped) for (const unit of added) this.#start(unit, this.#groups.get(unit.target.schedule)!);
    return { added: added.length, removed, kept: units.length - added.length };
  }

  /** Resolves once no poll is in flight: after the first round, for --once. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  /** Stops every timer and aborts polls in flight; resolves when they have settled. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const group of this.#groups.values()) await group.task.destroy();
    this.#groups.clear();
    for (const { controller } of this.#running.values()) controller.abort(new Error('shutting down'));
    await this.idle();
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
    let skipped = 0;
    for (const unit of group.units.values()) {
      if (this.#running.has(unit.key)) skipped++;
      else this.#start(unit, group);
    }
    if (skipped > 0) {
      this.#log.warn(
        { schedule: group.task.getPattern(), skipped, units: group.units.size },
        'units still polling from an earlier tick were skipped; the schedule may be too tight for api.concurrency',
      );
    }
  }

  #start(unit: PollUnit, group: Group): void {
    const controller = new AbortController();
    // A poll, retries included, must end before the unit's next tick.
    const deadline = group.task.getNextRun()?.getTime() ?? this.#now() + 60_000;
    const done = this.#poll(unit, { signal: controller.signal, deadline }).finally(() => {
      if (this.#running.get(unit.key)?.controller === controller) this.#running.delete(unit.key);
    });
    this.#running.set(unit.key, { controller, done });
  }
}
