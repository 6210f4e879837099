// Real processes on loopback for live tests: free ports, children that are always ended, and a
// small client for Prometheus's HTTP API.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { REPO, repoPath, run } from './tools.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** The last lines it printed, for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL if it is still there after graceMs; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

export function startChild(name: string, cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Child {
  const child = spawn(cmd, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (lines.length > 60) lines.splice(0, lines.length - 60);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    name,
    process: child,
    output: () => `--- last output of ${name}:\n${lines.join('\n')}`,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Poll `check` until it returns true or the deadline passes; never a fixed sleep. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, diagnostics: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      // a child that exited is final; anything else (connection refused...) may pass
      if ((err as Error).message.includes('exited early')) throw err;
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}\n${diagnostics()}`);
}

export async function httpStatus(url: string): Promise<number> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  await res.arrayBuffer();
  return res.status;
}

export interface PromSeries {
  metric: Record<string, string>;
  value?: [number, string];
}

export interface PromResult {
  status: 'success' | 'error';
  error?: string;
  errorType?: string;
  data?: { resultType: string; result: PromSeries[] };
}

function encode(params: Record<string, string | string[]>): URLSearchParams {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const one of Array.isArray(v) ? v : [v]) body.append(k, one);
  return body;
}

export class PrometheusClient {
  readonly base: string;

  constructor(base: string) {
    this.base = base;
  }

  async get<T>(path: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const res = await fetch(`${this.base}${path}?${encode(params)}`, { signal: AbortSignal.timeout(10_000) });
    return (await res.json()) as T;
  }

  /** POST form: long dashboard queries stay out of the URL, as Grafana sends them. */
  async post<T>(path: string, params: Record<string, string | string[]>): Promise<T> {
    const res = await fetch(`${this.base}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: encode(params),
      signal: AbortSignal.timeout(10_000),
    });
    return (await res.json()) as T;
  }

  query(expr: string): Promise<PromResult> {
    return this.post<PromResult>('/api/v1/query', { query: expr });
  }

  /** What Grafana's label_values(selector, label) returns: the label's values on matching series. */
  async labelValues(selector: string, label: string): Promise<string[]> {
    const res = await this.post<{ status: string; data: Record<string, string>[] }>('/api/v1/series', {
      'match[]': selector,
      start: String(Date.now() / 1000 - 3600),
      end: String(Date.now() / 1000),
    });
    if (res.status !== 'success') throw new Error(`series ${selector}: ${JSON.stringify(res)}`);
    return [...new Set(res.data.map((s) => s[label]).filter((v): v is string => v !== undefined && v !== ''))].sort();
  }
}

/** Build dist/ when it is missing or older than src/, so `npx vitest run` alone works too. */
export async function ensureBuilt(): Promise<string> {
  const main = repoPath('dist/main.js');
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
      ),
    );
  if (!existsSync(main) || statSync(main).mtimeMs < newest(repoPath('src'))) {
    const build = await run('npm', ['run', 'build'], { timeoutMs: 120_000 });
    if (build.code !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);
  }
  return main;
}
