import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI, as a user runs it after `npm run build`. */
export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

/** A running exporter process, its output collected as it comes. */
export interface ExporterProcess {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (or signal name) and how long it took from the call. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every JSON log line on stderr so far. */
  logs(): Record<string, unknown>[];
  /** Waits for a log line with this message; returns it. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** The http://host:port the process listens on, from its "listening" log line. */
  url(): Promise<string>;
}

/** Starts `node dist/main.js ...args`; the caller kills it (or awaits `exited`). */
export function spawnExporter(args: string[], env: Record<string, string | undefined> = {}): ExporterProcess {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, FLASHBACK_TOKEN: undefined, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: ExporterProcess = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
    logs: () =>
      proc.stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    waitForLog: async (msg, timeoutMs = 10_000) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const line = proc.logs().find((l) => l.msg === msg);
        if (line) return line;
        if (Date.now() > end || child.exitCode !== null) throw new Error(`no "${msg}" log line; stderr:\n${proc.stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    url: async () => `http://${String((await proc.waitForLog('listening')).address)}`,
  };
  child.stdout!.on('data', (d: Buffer) => (proc.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (proc.stderr += d.toString()));
  return proc;
}

/** Runs the CLI to completion. */
export async function runExporter(args: string[], env: Record<string, string | undefined> = {}) {
  const started = performance.now();
  const proc = spawnExporter(args, env);
  const { code } = await proc.exited;
  return { code, stdout: proc.stdout, stderr: proc.stderr, ms: performance.now() - started };
}
