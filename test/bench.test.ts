// `npm run bench` must keep working from a fresh checkout: a small run of every part of it.
// Timings are not asserted (they depend on the machine); that every variant ran, served the
// same series and wrote its numbers is.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoPath, run } from './support/tools.js';

interface Results {
  scrape: { variant: string; series: number; encoding: string; scrapers: number; scrapes: number; p50Ms: number; bytes: number }[];
  memory: { variant: string; bytesPerSeries: number }[];
  polls: { round: string; units: number; failed: number; apiRequests: number; apiConnections: number; series: number; ofIdeal: number; peakRssBytes: number }[];
  checks: { name: string; met: boolean }[];
}

const dir = mkdtempSync(join(tmpdir(), 'flashback-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run bench', () => {
  it('measures every variant and a poll round, and writes what it measured', async () => {
    const out = join(dir, 'results.json');
    const result = await run(process.execPath, [repoPath('bench/run.mjs'), '--quick', '--sizes=1000', '--polls=200@4', '--no-steady', `--out=${out}`], { timeoutMs: 120_000 });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Targets of issue 5:/);
    const results = JSON.parse(readFileSync(out, 'utf8')) as Results;

    // Four servers × identity and gzip × one and two scrapers, each of them scraped.
    expect(results.scrape).toHaveLength(16);
    for (const row of results.scrape) {
      expect(row.series).toBeGreaterThan(1000);
      expect(row.scrapes).toBeGreaterThan(0);
      expect(row.p50Ms).toBeGreaterThan(0);
    }
    // The exporter and the static Buffer send the same bytes: the static one is built from it.
    const size = (variant: string, encoding: string) => results.scrape.find((r) => r.variant === variant && r.encoding === encoding && r.scrapers === 1)!.bytes;
    expect(size('C', 'identity')).toBeGreaterThan(100_000);
    // Only the process and runtime metrics move between them (digits, a new GC kind): under 1 %.
    expect(Math.abs(size('B', 'identity') - size('C', 'identity')) / size('C', 'identity')).toBeLessThan(0.01);
    expect(results.memory.map((m) => m.variant).sort()).toEqual(['A', 'B', 'B0', 'C']);

    // The poll round: every unit polled once, over one keep-alive socket per request slot.
    const [round] = results.polls;
    expect(results.polls).toHaveLength(1);
    expect(round).toMatchObject({ round: 'first', units: 200, failed: 0, apiRequests: 200, apiConnections: 4 });
    // 16 series per unit (the fake API adds cachedTokens), then the exporter's own hundred or so.
    expect(round!.series).toBeGreaterThan(200 * 16);
    expect(round!.series).toBeLessThan(200 * 16 + 200);
    expect(round!.ofIdeal).toBeGreaterThan(0);
    expect(results.checks.length).toBeGreaterThan(10);
  });
});
