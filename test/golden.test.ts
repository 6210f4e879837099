import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeFlashback } from './support/fake-flashback.js';
import { fixture, jsonFixture } from './support/fixtures.js';
import { eventually, startExporter, type RunningExporter } from './support/exporter.js';
import { rawRequest } from './support/http.js';

// The clock of the run behind metrics.prom: a minute after the fixture's meta.end.
const NOW = 1704153660_000;

let fake: FakeFlashback;
let running: RunningExporter;

beforeAll(async () => {
  fake = await FakeFlashback.start((req) => {
    if (req.query.model === 'claude "sonnet" 4') return { status: 500, body: { success: false, message: 'upstream exploded' } };
    if (req.query.id === 'repo-9') return { body: jsonFixture('api/empty-series.json') };
    return { body: jsonFixture('api/ok.json') };
  });
  running = await startExporter(fixture('golden/config.yaml').replace('BASE_URL', fake.url), { now: () => NOW });
  await eventually(() => running.exporter.store.ready, 10_000, 'the first poll of every unit');
});

afterAll(async () => {
  await running?.close();
  await fake?.close();
});

/** Replaces what varies between machines and runs: the Node version and measured durations. */
function normalize(text: string): string {
  return text
    .replace(/node_version="[^"]*"/g, 'node_version="NODE_VERSION"')
    .replace(/^(flashback_exporter_poll_duration_seconds\{.*\}) \S+$/gm, '$1 DURATION');
}

describe('/metrics', () => {
  it('serves exactly the golden exposition for known API responses', async () => {
    const body = normalize(await (await fetch(`${running.url}/metrics`)).text());
    if (process.env.UPDATE_GOLDEN) writeFileSync(new URL('./fixtures/golden/metrics.prom', import.meta.url), body);
    expect(body).toBe(fixture('golden/metrics.prom'));
  });

  it('serves the same text gzip-compressed when asked, and plain when not', async () => {
    const plain = await rawRequest(`${running.url}/metrics`);
    const zipped = await rawRequest(`${running.url}/metrics`, { headers: { 'accept-encoding': 'deflate, gzip;q=0.8' } });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(zipped.headers.vary).toBe('Accept-Encoding');
    expect(zipped.body.length).toBeLessThan(plain.body.length);
    expect(normalize(gunzipSync(zipped.body).toString())).toBe(normalize(plain.body.toString()));
  });

  it('answers with the Prometheus text content type, in a chunked body that arrives whole', async () => {
    for (const encoding of ['identity', 'gzip']) {
      const res = await rawRequest(`${running.url}/metrics`, { headers: { 'accept-encoding': encoding } });
      expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      // The exporter's own lines are taken after the store's text has started out, so the
      // length is not known up front, as with promhttp.
      expect(res.headers['transfer-encoding']).toBe('chunked');
      expect(res.headers['content-length']).toBeUndefined();
      expect(res.complete).toBe(true);
      const text = (encoding === 'gzip' ? gunzipSync(res.body) : res.body).toString();
      expect(text).toMatch(/\nflashback_exporter_config_last_reload_success_timestamp_seconds \d+\n$/);
    }
  });

  it('passes promtool check metrics without a single remark', () => {
    const body = fixture('golden/metrics.prom').replace('NODE_VERSION', process.version).replace(/ DURATION$/gm, ' 0.01');
    const result = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect(result.error).toBeUndefined();
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('keeps the token out of the metrics and the landing page', async () => {
    for (const path of ['/metrics', '/']) {
      const body = await (await fetch(`${running.url}${path}`)).text();
      expect(body).not.toContain('test-token');
    }
    expect(JSON.stringify(running.logs)).not.toContain('test-token');
  });
});
