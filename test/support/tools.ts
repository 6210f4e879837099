// Running the real tools (promtool, prometheus, the built exporter) from tests.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export function repoPath(relative: string): string {
  return fileURLToPath(new URL(relative, new URL('../../', import.meta.url)));
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The path of a command on PATH, or a failure that says how to get it. */
export function requireTool(name: string, installHint: string): string {
  const which = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const path = which.stdout.trim();
  if (which.status !== 0 || !path || !existsSync(path)) {
    throw new Error(`${name} is not installed: ${installHint}`);
  }
  return path;
}

/** Run a command to completion, asynchronously so the worker stays responsive. */
export function run(cmd: string, args: readonly string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd ?? REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The node flags the image's ENTRYPOINT runs the exporter with (between `node` and the
 * script): what the benchmark and the manifests' tests run it with too.
 */
export function imageNodeFlags(): string[] {
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(repoPath('Dockerfile'), 'utf8'))?.[1];
  if (entrypoint === undefined) throw new Error('the Dockerfile has no exec-form ENTRYPOINT');
  return (JSON.parse(entrypoint) as string[]).slice(1, -1);
}

export const PROMTOOL_HINT = 'apt-get install prometheus (Debian ships promtool with it)';

/** `promtool check metrics` on an exposition: its exit code, and all it said (nothing, when happy). */
export function promtoolCheckMetrics(text: string): { readonly code: number | null; readonly remarks: string } {
  const result = spawnSync(requireTool('promtool', PROMTOOL_HINT), ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { code: result.status, remarks: result.stdout + result.stderr };
}
