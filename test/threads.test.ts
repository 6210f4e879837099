import { existsSync } from 'node:fs';
import { getPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { HELPER_THREAD_NICENESS, lowerHelperThreads, ThreadPriorityError } from '../src/threads/priority.js';

// A process's /proc/self/task as Linux shows a node process: the main thread, V8's four
// helper threads' worth of names, libuv's pool, Node's own.
const TASK_DIR = fileURLToPath(new URL('fixtures/threads/task', import.meta.url));

/** A setPriority that records its calls, and fails for the thread ids it is told to. */
function recorder(fails: Record<number, Error> = {}, nice = 0) {
  const calls: [number, number][] = [];
  return {
    calls,
    taskDir: TASK_DIR,
    getPriority: () => nice,
    setPriority: (tid: number, nice: number) => {
      if (fails[tid]) throw fails[tid];
      calls.push([tid, nice]);
    },
  };
}

describe('lowerHelperThreads', () => {
  it("lowers V8's helper threads to nice 10 and leaves the main thread, libuv's pool and Node's own threads alone", () => {
    const system = recorder();
    const result = lowerHelperThreads(system);
    expect(system.calls.sort()).toEqual([
      [4102, 10],
      [4103, 10],
    ]);
    expect(result).toEqual({ supported: true, lowered: expect.arrayContaining([4102, 4103]), failed: [] });
    expect(result.lowered).toHaveLength(2);
  });

  it('goes on past a thread it may not change, and says which one and why, with a stable code and the cause', () => {
    const denied = Object.assign(new Error('A system error occurred: uv_os_setpriority returned EACCES'), { code: 'ERR_SYSTEM_ERROR', info: { code: 'EACCES' } });
    const system = recorder({ 4102: denied });
    const result = lowerHelperThreads(system);
    expect(system.calls).toEqual([[4103, 10]]);
    expect(result.lowered).toEqual([4103]);
    expect(result.failed).toHaveLength(1);
    expect(result.failed[0]).toBeInstanceOf(ThreadPriorityError);
    expect(result.failed[0]!.code).toBe('FLASHBACK_ERR_THREAD_PRIORITY');
    expect(result.failed[0]!.message).toMatch(/thread 4102 to 10: .*EACCES/);
    expect(result.failed[0]!.cause).toBe(denied);
  });

  it('passes over a thread that ended before it got to it, without calling that a failure', () => {
    const gone = Object.assign(new Error('A system error occurred: uv_os_setpriority returned ESRCH'), { code: 'ERR_SYSTEM_ERROR', info: { code: 'ESRCH' } });
    const system = recorder({ 4103: gone });
    const result = lowerHelperThreads(system);
    expect(result).toEqual({ supported: true, lowered: [4102], failed: [] });
  });

  it('keeps them 10 below a process started with nice, and at most 19', () => {
    const niced = recorder({}, 5);
    lowerHelperThreads(niced);
    expect(niced.calls.map(([, nice]) => nice)).toEqual([15, 15]);
    const nicest = recorder({}, 15);
    lowerHelperThreads(nicest);
    expect(nicest.calls.map(([, nice]) => nice)).toEqual([19, 19]);
  });

  it('does nothing, and says so, where the system lists no threads (not Linux)', () => {
    const system = recorder();
    const result = lowerHelperThreads({ ...system, taskDir: fileURLToPath(new URL('fixtures/threads/no-such-dir', import.meta.url)) });
    expect(result).toEqual({ supported: false, lowered: [], failed: [] });
    expect(system.calls).toEqual([]);
  });

  it.runIf(existsSync('/proc/self/task'))('changes the real threads of a process on Linux, each alone', async () => {
    // In a child process: lowering the test runner's own threads would outlive the test.
    const { execFileSync } = await import('node:child_process');
    const script = `
      import { lowerHelperThreads } from ${JSON.stringify(new URL('../src/threads/priority.ts', import.meta.url).href)};
      import { getPriority } from 'node:os';
      import { readdirSync, readFileSync } from 'node:fs';
      const result = lowerHelperThreads();
      const threads = readdirSync('/proc/self/task').map((t) => ({ name: readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim(), nice: getPriority(Number(t)) }));
      console.log(JSON.stringify({ result: { ...result, failed: result.failed.map(String) }, threads }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as {
      result: { supported: boolean; lowered: number[]; failed: string[] };
      threads: { name: string; nice: number }[];
    };
    expect(out.result.supported).toBe(true);
    expect(out.result.failed).toEqual([]);
    const helpers = out.threads.filter((t) => t.name === 'V8Worker');
    // Node names them since 24; before, every thread but one is "node", and none is changed.
    if (Number(process.versions.node.split('.')[0]) >= 24) expect(helpers.length).toBeGreaterThan(0);
    expect(out.result.lowered).toHaveLength(helpers.length);
    expect(helpers.every((t) => t.nice === Math.min(19, getPriority() + HELPER_THREAD_NICENESS))).toBe(true);
    expect(out.threads.filter((t) => t.name !== 'V8Worker').every((t) => t.nice === getPriority())).toBe(true);
  });
});
