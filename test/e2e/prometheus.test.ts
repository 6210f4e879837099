// The whole path as a user runs it: a Flashback API (the fake, on loopback) → the exporter →
// a real Prometheus (Debian's package) scraping it every second → Prometheus's query API.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeFlashback } from '../support/fake-flashback.js';
import { jsonFixture } from '../support/fixtures.js';
import { startExporter, type RunningExporter } from '../support/exporter.js';
import { freePort, PrometheusClient, startChild, waitFor, type Child } from '../support/live.js';
import { PROMTOOL_HINT, requireTool } from '../support/tools.js';

// Label values that exercise every escape of the text format, and text beyond ASCII.
const TEAM = 'platform "core" \\ night\nshift ünïcode ✓';
const MODEL = 'claude "sonnet" 4\\beta';

let fake: FakeFlashback;
let running: RunningExporter;
let prometheus: Child;
let prom: PrometheusClient;
let dir: string;

beforeAll(async () => {
  const binary = requireTool('prometheus', PROMTOOL_HINT);
  fake = await FakeFlashback.start(() => ({ body: jsonFixture('api/ok.json') }));
  running = await startExporter(`
api:
  baseUrl: ${fake.url}
defaults:
  schedule: "*/2 * * * * *"
targets:
  - name: acme
    scope: org
    id: org-123
  - name: eng
    scope: workspace
    id: ws-42
    filters:
      model: [gpt-4o, ${JSON.stringify(MODEL)}]
    labels:
      team: ${JSON.stringify(TEAM)}
`);
  dir = mkdtempSync(join(tmpdir(), 'flashback-e2e-'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: flashback\n    static_configs:\n      - targets: ['${new URL(running.url).host}']\n`,
  );
  prometheus = startChild('prometheus', binary, [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ]);
  prom = new PrometheusClient(`http://127.0.0.1:${port}`);
  await waitFor(
    'Prometheus to ingest the exporter\'s data',
    async () => ((await prom.query('flashback_private_chat_input_tokens')).data?.result.length ?? 0) === 3,
    45_000,
    () => prometheus.output(),
  );
}, 60_000);

afterAll(async () => {
  await prometheus?.stop();
  await running?.close();
  await fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function values(expr: string): Promise<{ labels: Record<string, string>; value: number }[]> {
  const r = await prom.query(expr);
  expect(r.status).toBe('success');
  return (r.data?.result ?? []).map((s) => ({ labels: s.metric, value: Number(s.value?.[1]) }));
}

describe('a real Prometheus scraping the exporter', () => {
  it('scrapes it without an error', async () => {
    const targets = await prom.get<{ data: { activeTargets: { health: string; lastError: string }[] } }>('/api/v1/targets');
    expect(targets.data.activeTargets).toEqual([expect.objectContaining({ health: 'up', lastError: '' })]);
  });

  it('returns the API\'s values of the latest bucket through the query API', async () => {
    const tokens = await values('flashback_private_chat_input_tokens{target="acme"}');
    expect(tokens).toEqual([{ labels: expect.objectContaining({ job: 'flashback', target: 'acme', scope: 'org', scope_id: 'org-123', window: '24h', bucket_size: '1h' }), value: 900 }]);
    expect((await values('flashback_private_chat_output_tokens{target="acme"}'))[0]?.value).toBe(250);
    expect((await values('flashback_private_chat_requests{target="acme"}'))[0]?.value).toBe(9);
    expect((await values('flashback_private_chat_bucket_timestamp_seconds{target="acme"}'))[0]?.value).toBe(1704150000);
    expect((await values('flashback_private_chat_window_stat{target="acme",stat="p90"}'))[0]?.value).toBe(90);
    expect((await values('flashback_private_chat_cached_tokens{target="acme"}'))[0]?.value).toBe(80);
  });

  it('ingests label values with quotes, backslashes, newlines and non-ASCII text unchanged', async () => {
    const series = await values('flashback_private_chat_input_tokens{target="eng"}');
    expect(series.map((s) => s.labels.model).sort()).toEqual([MODEL, 'gpt-4o'].sort());
    expect(series.every((s) => s.labels.team === TEAM)).toBe(true);
  });

  it('sees every unit up and each poll counted', async () => {
    expect((await values('flashback_exporter_target_up')).map((s) => s.value)).toEqual([1, 1, 1]);
    expect((await values('flashback_exporter_api_requests_total{code="200"}'))[0]?.value).toBeGreaterThanOrEqual(3);
  });
});
