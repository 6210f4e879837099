import { afterEach, describe, expect, it } from 'vitest';
import { FakeFlashback, type FakeRequest } from './support/fake-flashback.js';
import { jsonFixture } from './support/fixtures.js';
import { eventually, startExporter, type RunningExporter } from './support/exporter.js';
import { Scheduler } from '../src/scheduler/scheduler.js';
import { expandUnits } from '../src/config/units.js';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/log/logger.js';
import { Writable } from 'node:stream';

let fake: FakeFlashback | undefined;
let running: RunningExporter | undefined;

afterEach(async () => {
  await running?.close();
  await fake?.close();
  running = fake = undefined;
});

const YEARLY = '0 0 0 1 1 *';
const EVERY_SECOND = '* * * * * *';

function config(url: string, schedule: string, extra = '', targets = 'model: [m1, m2, m3]') {
  return `
api:
  baseUrl: ${url}
  retries: 0
${extra}
defaults:
  schedule: "${schedule}"
targets:
  - name: t
    scope: org
    filters:
      ${targets}
`;
}

const count = (requests: FakeRequest[], model: string) => requests.filter((r) => r.query.model === model).length;

describe('scheduler', () => {
  it('polls every unit once right at start, before any tick', async () => {
    fake = await FakeFlashback.start(() => ({ body: jsonFixture('api/ok.json') }));
    running = await startExporter(config(fake.url, YEARLY));
    await eventually(() => running!.exporter.store.ready);
    expect(fake.requests.map((r) => r.query.model).sort()).toEqual(['m1', 'm2', 'm3']);
  });

  it('polls again on every tick of the cron schedule', async () => {
    fake = await FakeFlashback.start(() => ({ body: jsonFixture('api/ok.json') }));
    running = await startExporter(config(fake.url, EVERY_SECOND));
    await eventually(() => ['m1', 'm2', 'm3'].every((m) => count(fake!.requests, m) >= 3), 10_000, 'three polls of each unit');
  });

  it('never polls a unit again while its previous poll is still running', async () => {
    const inFlight = new Map<string, number>();
    let overlap = false;
    fake = await FakeFlashback.start(async (req) => {
      const model = req.query.model!;
      inFlight.set(model, (inFlight.get(model) ?? 0) + 1);
      if (inFlight.get(model)! > 1) overlap = true;
      // m1 answers slower than the schedule; the others keep up.
      await new Promise((r) => setTimeout(r, model === 'm1' ? 2_500 : 10));
      inFlight.set(model, inFlight.get(model)! - 1);
      return { body: jsonFixture('api/ok.json') };
    });
    running = await startExporter(config(fake.url, EVERY_SECOND, '  timeout: 10s'));
    await eventually(() => count(fake!.requests, 'm2') >= 4, 10_000, 'four polls of the fast unit');
    expect(overlap).toBe(false);
    expect(count(fake.requests, 'm1')).toBeLessThan(count(fake.requests, 'm2'));
    expect(running.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('skipped'))).toBe(true);
  });

  it('keeps requests in flight within api.concurrency across all targets', async () => {
    fake = await FakeFlashback.start(() => ({ body: jsonFixture('api/ok.json'), delayMs: 50 }));
    running = await startExporter(config(fake.url, YEARLY, '  concurrency: 3', 'model: [m1, m2, m3, m4, m5, m6, m7, m8]\n      userId: [u1, u2]'));
    await eventually(() => running!.exporter.store.ready);
    expect(fake.requests).toHaveLength(16);
    expect(fake.maxConcurrent).toBe(3);
  });

  it('aborts polls in flight on stop without counting them as failures', async () => {
    fake = await FakeFlashback.start(() => ({ hang: true }));
    running = await startExporter(config(fake.url, YEARLY, '  timeout: 60s'));
    await eventually(() => fake!.requests.length === 3);
    const stopped = running.exporter.stop();
    await expect(stopped).resolves.toBeUndefined();
    const body = await (await fetch(`${running.url}/metrics`)).text();
    expect(body).not.toMatch(/flashback_exporter_poll_errors_total/);
    expect(body).not.toMatch(/flashback_exporter_target_up/);
  });

  it('starts at most maxActive polls at once and queues the rest of a round', async () => {
    const parsed = parseConfig(config('http://127.0.0.1:1', YEARLY, '', `model: [${Array.from({ length: 40 }, (_, i) => `m${i}`).join(', ')}]`));
    if (!parsed.ok) throw new Error('bad config');
    let active = 0;
    let peak = 0;
    const polled: string[] = [];
    const scheduler = new Scheduler({
      log: createLogger({ level: 'error', format: 'json', destination: new Writable({ write: (_c, _e, done) => done() }) }),
      maxActive: () => 5,
      poll: async (unit) => {
        peak = Math.max(peak, ++active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
        polled.push(unit.id);
        return true;
      },
    });
    try {
      scheduler.setUnits(expandUnits(parsed.config));
      await scheduler.idle();
      expect(polled).toHaveLength(40);
      expect(new Set(polled).size).toBe(40);
      expect(peak).toBe(5);
    } finally {
      await scheduler.stop();
    }
  });

  it('polls every unit of a 30,000-unit round once, never more than maxActive at a time, and in order', async () => {
    const users = Array.from({ length: 1000 }, (_, i) => `u${i}`).join(', ');
    const models = Array.from({ length: 30 }, (_, i) => `m${i}`).join(', ');
    const parsed = parseConfig(config('http://127.0.0.1:1', YEARLY, 'limits:\n  maxSeries: 1000000', `model: [${models}]\n      userId: [${users}]`));
    if (!parsed.ok) throw new Error('bad config');
    const units = expandUnits(parsed.config);
    const polled: string[] = [];
    let active = 0;
    let peak = 0;
    const scheduler = new Scheduler({
      log: createLogger({ level: 'error', format: 'json', destination: new Writable({ write: (_c, _e, done) => done() }) }),
      maxActive: () => 16,
      poll: async (unit) => {
        peak = Math.max(peak, ++active);
        polled.push(unit.key);
        await new Promise((r) => setImmediate(r));
        active--;
        return true;
      },
    });
    try {
      scheduler.setUnits(units);
      await scheduler.idle();
      expect(polled).toHaveLength(30_000);
      expect(polled).toEqual(units.map((u) => u.key));
      expect(peak).toBe(16);
    } finally {
      await scheduler.stop();
    }
  });

  it('aborts the poll of a unit a reload removes, and does not start it again while that poll settles', async () => {
    const parsed = parseConfig(config('http://127.0.0.1:1', YEARLY));
    if (!parsed.ok) throw new Error('bad config');
    const units = expandUnits(parsed.config);
    const started: string[] = [];
    const settled: string[] = [];
    const signals = new Map<string, AbortSignal>();
    const scheduler = new Scheduler({
      log: createLogger({ level: 'error', format: 'json', destination: new Writable({ write: (_c, _e, done) => done() }) }),
      // Hangs until aborted, then takes a while to settle, as a request being torn down does.
      poll: async (unit, { signal }) => {
        started.push(unit.id);
        signals.set(unit.id, signal);
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        await new Promise((resolve) => setTimeout(resolve, 30));
        settled.push(unit.id);
        return false;
      },
    });
    const [removed, ...others] = units;
    try {
      scheduler.setUnits(units);
      expect(started).toHaveLength(3);
      expect(scheduler.setUnits(others)).toEqual({ added: 0, removed: 1, kept: 2 });
      expect(signals.get(removed!.id)!.aborted).toBe(true);
      for (const unit of others) expect(signals.get(unit.id)!.aborted).toBe(false);
      // Added back while its aborted poll settles: not polled twice at once.
      expect(scheduler.setUnits(units)).toEqual({ added: 1, removed: 0, kept: 2 });
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(settled).toEqual([removed!.id]);
      expect(started).toHaveLength(3);
    } finally {
      await scheduler.stop();
    }
    // Stopping aborted the two others, and waited for them to settle.
    expect(settled.sort()).toEqual(units.map((u) => u.id).sort());
  });

  it('lets a reload remove units still waiting in a round and add others, polling each unit present once', async () => {
    const parsed = parseConfig(config('http://127.0.0.1:1', YEARLY, '', `model: [${Array.from({ length: 40 }, (_, i) => `m${i}`).join(', ')}]`));
    if (!parsed.ok) throw new Error('bad config');
    const units = expandUnits(parsed.config);
    const polled: string[] = [];
    const scheduler = new Scheduler({
      log: createLogger({ level: 'error', format: 'json', destination: new Writable({ write: (_c, _e, done) => done() }) }),
      maxActive: () => 2,
      poll: async (unit) => {
        polled.push(unit.id);
        await new Promise((r) => setTimeout(r, 2));
        return true;
      },
    });
    try {
      scheduler.setUnits(units);
      // Two are running, 38 wait: keep the first 10 and the last 10, drop the 20 between.
      const kept = [...units.slice(0, 10), ...units.slice(30)];
      expect(scheduler.setUnits(kept)).toEqual({ added: 0, removed: 20, kept: 20 });
      await scheduler.idle();
      expect(polled.sort()).toEqual(kept.map((u) => u.id).sort());
    } finally {
      await scheduler.stop();
    }
  });
});
