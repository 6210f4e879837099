// What run.mjs and gaps.mjs share: child processes speaking a small request/answer protocol
// over IPC, CPU pinning, timed scrapes, the image's node flags.
import { execFileSync, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { cpus } from 'node:os';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The node flags between `node` and the script in the Dockerfile's exec-form ENTRYPOINT. */
export function imageNodeFlags() {
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8'))?.[1];
  if (entrypoint === undefined) throw new Error('the Dockerfile has no exec-form ENTRYPOINT');
  return JSON.parse(entrypoint).slice(1, -1);
}

/**
 * Seconds between the poll rounds of polls.mjs: a divisor of 60 comfortably longer than the
 * first round's expected time at an API answering in `latencyMs`.
 */
export function roundPeriod(units, concurrency, latencyMs) {
  const expected = (units / concurrency) * (latencyMs / 1000) * 2 + 2;
  return [5, 10, 15, 20, 30, 60].find((p) => p >= expected) ?? 60;
}

/** Whether processes can be pinned to a CPU here: two CPUs or more, and taskset (util-linux). */
export function canPin() {
  if (cpus().length < 2) return false;
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pins every thread of a process to one CPU. */
export function pin(pid, cpu) {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

/** A child process speaking the small request/answer protocol of server.mjs, polls.mjs and fake-api.mjs. */
export function spawnChild(script, argv, { exposeGc = false, nodeOptions = [] } = {}) {
  const execArgv = [...(exposeGc ? ['--expose-gc'] : []), ...nodeOptions];
  const child = fork(new URL(script, import.meta.url), argv.map(String), { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  let next = 0;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const ready = new Promise((resolve, reject) => {
    child.on('message', (msg) => {
      if (msg.ready) return resolve(msg);
      waiting.get(msg.id)?.(msg);
      waiting.delete(msg.id);
    });
    void exited.then((code) => reject(new Error(`${script} ${argv.join(' ')} exited with ${code} before it was ready`)));
  });
  return {
    pid: child.pid,
    ready,
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    call: (cmd, args = {}) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        waiting.set(id, resolve);
        child.send({ ...args, cmd, id });
        void exited.then((code) => reject(new Error(`${script} exited with ${code} during ${cmd}`)));
      }),
    async exit() {
      if (child.exitCode === null && child.connected) child.send({ cmd: 'exit' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** One GET /metrics, timed from the request to the last byte; the body is kept only when asked. */
export function scrape(agent, port, gzip, keep = false) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = get({ host: '127.0.0.1', port, path: '/metrics', agent, headers: gzip ? { 'accept-encoding': 'gzip' } : {} }, (res) => {
      const chunks = [];
      let bytes = 0;
      res.on('data', (chunk) => {
        bytes += chunk.length;
        if (keep) chunks.push(chunk);
      });
      res.on('end', () => {
        const ms = performance.now() - started;
        if (res.statusCode !== 200) return reject(new Error(`GET /metrics: HTTP ${res.statusCode}`));
        if (gzip !== (res.headers['content-encoding'] === 'gzip')) return reject(new Error(`GET /metrics: unexpected content-encoding ${res.headers['content-encoding']}`));
        resolve({ ms, bytes, body: keep ? Buffer.concat(chunks) : undefined });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Nearest-rank percentile: with fewer than 100 samples, p99 is the maximum. */
export function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/**
 * The poll benchmark's processes, as run.mjs, gaps.mjs and rounds.mjs start them: the fake API
 * answering in `latencyMs`; polls.mjs, the whole exporter, polling `units` units at
 * `concurrency` with a round every `period` seconds (0: the first round only); and beside it an
 * idle process (idle.mjs), the machine's floor for event-loop delay. Once all three are ready,
 * `pinTo` is called with the exporter's pid and the idle process's. `exit()` stops all three;
 * if one fails to start, those already started are stopped before the error is thrown.
 */
export async function startPollRig({ units, concurrency, latencyMs, period, nodeOptions = [], idleOptions = nodeOptions, pinTo }) {
  const started = [];
  const exit = async () => {
    for (const child of started.reverse()) await child.exit();
  };
  try {
    const api = spawnChild('fake-api.mjs', [latencyMs]);
    started.push(api);
    const { port: apiPort } = await api.ready;
    const idle = spawnChild('idle.mjs', [], { nodeOptions: idleOptions });
    started.push(idle);
    const exporter = spawnChild('polls.mjs', [`http://127.0.0.1:${apiPort}`, units, concurrency, period], { nodeOptions });
    started.push(exporter);
    const { port } = await exporter.ready;
    await idle.ready;
    pinTo?.(exporter.pid);
    pinTo?.(idle.pid);
    return { api, apiPort, exporter, idle, port, exit };
  } catch (err) {
    await exit();
    throw err;
  }
}
