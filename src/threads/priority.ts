import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { join } from 'node:path';

/**
 * How much nicer than the event loop V8's helper threads are made: Chromium's nice value for its
 * background threads. The kernel then gives the event loop about nine tenths of a CPU both want,
 * and wakes it ahead of them.
 */
export const HELPER_THREAD_NICENESS = 10;

/**
 * The name Node (24 and later; before, they have no name of their own) gives the threads of V8's
 * platform pool: its compilers, and its GC helpers too without --single-threaded-gc.
 */
const HELPER_THREAD_NAME = 'V8Worker';
const MAX_NICE = 19;

/** What lowerHelperThreads needs from the system; tests pass their own. */
export interface ThreadSystem {
  /** One directory per thread of this process, named by its id, each with a `comm` file: Linux's /proc/self/task. */
  readonly taskDir: string;
  /** The calling thread's nice value. */
  readonly getPriority: () => number;
  /** Sets one thread's nice value: on Linux, setpriority(2) with a thread id sets that thread's alone. */
  readonly setPriority: (tid: number, nice: number) => void;
}

/** This process's threads, as Linux shows them. */
export const linuxThreads: ThreadSystem = { taskDir: '/proc/self/task', getPriority: () => getPriority(), setPriority };

/** A thread whose priority could not be changed, and why; stable `code` as every error here. */
export class ThreadPriorityError extends Error {
  readonly code = 'FLASHBACK_ERR_THREAD_PRIORITY';
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = 'ThreadPriorityError';
  }
}

/** What lowerHelperThreads did: the threads it lowered, and the ones it could not, each with why. */
export interface Lowered {
  /** False where the system lists no threads (not Linux); then nothing was tried. */
  readonly supported: boolean;
  readonly lowered: readonly number[];
  readonly failed: readonly ThreadPriorityError[];
}

/**
 * Lowers the priority of V8's helper threads below the event loop's. At the start of every poll
 * round V8 compiles hot functions again on them (TurboFan, 10–30 ms a function); in a container
 * given one CPU they took turns with the event loop, and held scrapes and answers up as long
 * (`bench/gaps.mjs --perf`). Chromium runs the same work at background priority; Node runs it
 * at the main thread's. An exporter's event loop is idle most of the time, so compilation still
 * gets done, only not ahead of a scrape. Never throws: a failure leaves a thread as it was.
 */
export function lowerHelperThreads(system: ThreadSystem = linuxThreads): Lowered {
  let tids: string[];
  try {
    tids = readdirSync(system.taskDir);
  } catch {
    return { supported: false, lowered: [], failed: [] };
  }
  // Relative to the event loop's, so a process started with nice never gets helpers above it.
  const nice = Math.min(MAX_NICE, system.getPriority() + HELPER_THREAD_NICENESS);
  const lowered: number[] = [];
  const failed: ThreadPriorityError[] = [];
  for (const name of tids) {
    const tid = Number(name);
    try {
      // A thread can end between the listing and the read; it then needs nothing.
      if (readFileSync(join(system.taskDir, name, 'comm'), 'utf8').trim() !== HELPER_THREAD_NAME) continue;
      system.setPriority(tid, nice);
      lowered.push(tid);
    } catch (err) {
      if (vanished(err)) continue;
      failed.push(new ThreadPriorityError(`cannot set the nice value of thread ${name} to ${nice}: ${(err as Error).message}`, { cause: err }));
    }
  }
  return { supported: true, lowered, failed };
}

// ENOENT from reading its name, ESRCH from setpriority(2) (os.setPriority's SystemError keeps it in `info`).
function vanished(err: unknown): boolean {
  const e = err as { code?: string; info?: { code?: string } };
  return e.code === 'ENOENT' || e.code === 'ESRCH' || e.info?.code === 'ESRCH';
}
