// The Dockerfile and .dockerignore, read statically. The image itself is built and run by
// scripts/container-smoke.sh (CI runs it separately: it takes a while and needs root).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { imageNodeFlags, repoPath } from '../support/tools.js';

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const joined = text.replace(/\\\n/g, ' ');
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, op, args] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    if (!op || args === undefined) continue;
    if (op.toUpperCase() === 'FROM') {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args.trim()) ?? [];
      stages.push({ from: from!, name, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args: args.trim() });
    }
  }
  return stages;
}

const stages = parseDockerfile(readFileSync(repoPath('Dockerfile'), 'utf8'));
const runtime = stages.at(-1)!;
const last = (op: string) => runtime.instructions.filter((i) => i.op === op).at(-1)?.args;
const execForm = (args: string | undefined) => JSON.parse(args ?? 'null') as string[] | null;

describe('the Dockerfile', () => {
  it('builds on node:24 slim and runs on a distroless or slim Node 24 image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages.slice(0, -1)) expect(s.from).toMatch(/^node:24-[a-z]*-?slim$/);
    expect(runtime.from).toMatch(/^(gcr\.io\/distroless\/nodejs24-debian1[23]:nonroot|node:24-[a-z]*-?slim)$/);
  });

  it('compiles in a build stage and gives the runtime only production dependencies', () => {
    const runs = stages.flatMap((s) => s.instructions.filter((i) => i.op === 'RUN').map((i) => i.args));
    expect(runs.some((r) => /npm ci\b/.test(r) && !r.includes('--omit=dev'))).toBe(true);
    expect(runs.some((r) => /npm run build\b/.test(r))).toBe(true);
    const copies = runtime.instructions.filter((i) => i.op === 'COPY').map((i) => i.args);
    const modules = copies.find((c) => /node_modules/.test(c));
    const from = /--from=(\S+)/.exec(modules ?? '')?.[1];
    const depsStage = stages.find((s) => s.name === from);
    expect(depsStage?.instructions.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args)), 'node_modules from an npm ci --omit=dev stage').toBe(true);
    expect(copies.some((c) => /\bdist\b/.test(c))).toBe(true);
    // package.json says "type": "module": without it node would read dist/*.js as CommonJS
    expect(copies.some((c) => /^package\.json\s/.test(c))).toBe(true);
  });

  it('runs as a numeric non-root user, so Kubernetes can verify runAsNonRoot', () => {
    const user = last('USER');
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user!.split(':')[0])).toBeGreaterThan(0);
  });

  it('runs node directly as PID 1 on dist/main.js, never npm or a shell, with the config from /etc/flashback-exporter', () => {
    const entrypoint = execForm(last('ENTRYPOINT'));
    expect(entrypoint, 'exec form: a shell form would make /bin/sh PID 1 and swallow SIGTERM').not.toBeNull();
    expect(entrypoint![0]).toMatch(/(^|\/)node$/);
    expect(entrypoint!.at(-1)).toBe('/app/dist/main.js');
    expect(entrypoint!.join(' ')).not.toMatch(/npm|\bsh\b/);
    expect(execForm(last('CMD'))).toEqual(['--config.file=/etc/flashback-exporter/config.yaml']);
    expect(last('WORKDIR')).toBe('/app');
  });

  it('runs node with a small young generation, GC on the main thread, no pretenuring and room to grow, flags this Node accepts', () => {
    const flags = imageNodeFlags();
    expect(flags).toEqual(execForm(last('ENTRYPOINT'))!.slice(1, -1));
    expect(flags).toEqual(['--max-semi-space-size=8', '--single-threaded-gc', '--no-allocation-site-pretenuring', '--heap-growing-percent=100']);
    const result = spawnSync(process.execPath, [...flags, '-e', 'process.stdout.write(String(require("v8").getHeapSpaceStatistics().length))'], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('exposes 9877', () => {
    expect(runtime.instructions.filter((i) => i.op === 'EXPOSE').map((i) => i.args)).toEqual(['9877']);
  });
});

describe('.dockerignore', () => {
  const lines = readFileSync(repoPath('.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('is an allow-list: nothing reaches the build context unless named', () => {
    expect(lines[0]).toBe('*');
    expect(lines.slice(1).every((l) => l.startsWith('!'))).toBe(true);
  });

  it('lets in every path the Dockerfile copies from the context, and nothing else', () => {
    const allowed = lines.slice(1).map((l) => l.slice(1).replace(/\/$/, ''));
    const sources = stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1))
      .map((p) => p.replace(/\/$/, '').replace(/^\.\//, ''));
    expect([...new Set(sources)].sort()).toEqual([...new Set(allowed)].sort());
  });
});
