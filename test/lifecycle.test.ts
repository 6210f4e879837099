import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileTokenSource } from '../src/api/token.js';
import { FakeFlashback } from './support/fake-flashback.js';
import { jsonFixture } from './support/fixtures.js';
import { eventually, sampleValue, startExporter, type RunningExporter } from './support/exporter.js';
import { rawRequest } from './support/http.js';

let fake: FakeFlashback | undefined;
let running: RunningExporter | undefined;

afterEach(async () => {
  await running?.close();
  await fake?.close();
  running = fake = undefined;
});

const YEARLY = '0 0 0 1 1 *';

function yaml(url: string, targets: string, extra = '') {
  return `
api:
  baseUrl: ${url}
  retries: 0
defaults:
  schedule: "${YEARLY}"
${extra}
targets:
${targets}
`;
}

async function start(targets: string, options: Parameters<typeof startExporter>[1] = {}) {
  fake ??= await FakeFlashback.start(() => ({ body: jsonFixture('api/ok.json') }));
  running = await startExporter(yaml(fake.url, targets), options);
  await eventually(() => running!.exporter.store.ready);
  return running;
}

const metrics = async () => (await fetch(`${running!.url}/metrics`)).text();

describe('HTTP endpoints', () => {
  it('answers /-/healthy at once and /-/ready only after every unit finished its first poll', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    fake = await FakeFlashback.start(async () => {
      await gate;
      return { body: jsonFixture('api/ok.json') };
    });
    running = await startExporter(yaml(fake.url, '  - { name: a, scope: org }\n  - { name: b, scope: org, id: x }'));
    expect((await rawRequest(`${running.url}/-/healthy`)).status).toBe(200);
    const notReady = await rawRequest(`${running.url}/-/ready`);
    expect(notReady.status).toBe(503);
    expect(notReady.body.toString()).toMatch(/2 of 2 poll units have not finished their first poll/);
    // A restart serves /metrics at once, without data, while the first polls are in flight.
    const early = await rawRequest(`${running.url}/metrics`);
    expect(early.status).toBe(200);
    expect(early.body.toString()).not.toMatch(/flashback_private_chat_/);
    release();
    await eventually(async () => (await rawRequest(`${running!.url}/-/ready`)).status === 200);
  });

  it('shows every poll unit and its state on the landing page, HTML-escaped', async () => {
    fake = await FakeFlashback.start((req) => (req.query.model === 'bad' ? { status: 500, body: '<b>boom</b>' } : { body: jsonFixture('api/ok.json') }));
    await start('  - name: eng\n    scope: org\n    filters: { model: [good, bad, "<script>"] }');
    const page = (await rawRequest(`${running!.url}/`)).body.toString();
    expect(page).toContain('href="/metrics"');
    expect(page).toMatch(/<tr class="up"><td>eng\{model=&#34;good&#34;\}<\/td><td>up<\/td>/);
    expect(page).toMatch(/<tr class="down"><td>eng\{model=&#34;bad&#34;\}<\/td><td>down<\/td>.*http_5xx: HTTP 500/);
    expect(page).not.toContain('<script>');
    expect(page).toContain('3 units: 2 up, 1 down, 0 not yet polled.');
  });

  it('answers unknown paths with 404 and wrong methods with 405', async () => {
    await start('  - { name: a, scope: org }');
    expect((await rawRequest(`${running!.url}/nope`)).status).toBe(404);
    const post = await rawRequest(`${running!.url}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });
});

describe('staleness', () => {
  it('keeps a failing unit\'s last good values until staleAfter, then drops its data series', async () => {
    let now = 1704153660_000;
    let failing = false;
    fake = await FakeFlashback.start(() => (failing ? { status: 503 } : { body: jsonFixture('api/ok.json') }));
    // A staleAfter may not be shorter than the schedule leaves between polls.
    running = await startExporter(yaml(fake.url, '  - { name: a, scope: org, schedule: "0 */5 * * * *", staleAfter: 5m }'), { now: () => now });
    await eventually(() => running!.exporter.store.ready);
    failing = true;
    await running.exporter.pollOnce();
    now += 4 * 60_000;
    expect(sampleValue(await metrics(), 'flashback_private_chat_input_tokens', { target: 'a' })).toBe(900);
    now += 60_000;
    const body = await metrics();
    expect(body).not.toMatch(/^flashback_private_chat_/m);
    expect(sampleValue(body, 'flashback_exporter_target_up', { target: 'a' })).toBe(0);
    expect(sampleValue(body, 'flashback_exporter_last_success_timestamp_seconds', { target: 'a' })).toBe(1704153660);
  });
});

describe('reload', () => {
  it('refuses POST /-/reload without --web.enable-lifecycle and answers GET with 405', async () => {
    await start('  - { name: a, scope: org }');
    expect((await rawRequest(`${running!.url}/-/reload`, { method: 'POST' })).status).toBe(403);
    expect((await rawRequest(`${running!.url}/-/reload`)).status).toBe(405);
  });

  it('applies a changed config: removed units vanish at once, new ones are polled at once, unchanged ones keep their data', async () => {
    await start('  - { name: keep, scope: org }\n  - { name: drop, scope: org, id: d }', { enableLifecycle: true });
    const polls = () => fake!.requests.filter((r) => r.query.id === undefined).length;
    expect(polls()).toBe(1);
    running!.setYaml(yaml(fake!.url, '  - { name: keep, scope: org }\n  - { name: added, scope: workspace, id: w }'));
    const res = await rawRequest(`${running!.url}/-/reload`, { method: 'POST' });
    expect(res.status).toBe(200);
    const body = await metrics();
    expect(body).not.toMatch(/target="drop"/);
    expect(sampleValue(body, 'flashback_private_chat_input_tokens', { target: 'keep' })).toBe(900);
    expect(polls()).toBe(1);
    await eventually(() => fake!.requests.some((r) => r.query.id === 'w'), 5_000, 'the new unit to be polled');
    expect(sampleValue(body, 'flashback_exporter_config_last_reload_successful')).toBe(1);
  });

  it('keeps the running config when the new one is invalid, and says why', async () => {
    await start('  - { name: keep, scope: org }', { enableLifecycle: true });
    running!.setYaml(yaml(fake!.url, '  - { name: keep, scope: galaxy }'));
    const res = await rawRequest(`${running!.url}/-/reload`, { method: 'POST' });
    expect(res.status).toBe(500);
    expect(res.body.toString()).toContain('test.yaml:9:19 targets[0].scope: must be one of org, workspace, repo');
    const body = await metrics();
    expect(sampleValue(body, 'flashback_exporter_config_last_reload_successful')).toBe(0);
    expect(sampleValue(body, 'flashback_private_chat_input_tokens', { target: 'keep' })).toBe(900);
    expect(running!.logs.some((l) => l.level === 'error' && String(l.problem).includes('targets[0].scope'))).toBe(true);
  });

  it('re-reads the api section on reload, so a new base URL takes effect', async () => {
    await start('  - { name: a, scope: org }', { enableLifecycle: true });
    const other = await FakeFlashback.start(() => ({ body: jsonFixture('api/partial-bucket.json') }));
    try {
      running!.setYaml(yaml(other.url, '  - { name: a, scope: org }\n  - { name: b, scope: org, id: b }'));
      expect((await running!.exporter.reload()).ok).toBe(true);
      await eventually(() => other.requests.length === 1, 5_000, 'a poll against the new base URL');
    } finally {
      await other.close();
    }
  });
});

describe('token rotation', () => {
  it('reads the token file again once a second, and keeps the last good token when the file is briefly gone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flashback-token-'));
    const file = join(dir, 'token');
    const warnings: string[] = [];
    let now = 0;
    try {
      writeFileSync(file, 'first-token\n');
      const next = await fileTokenSource(file, { onError: (err) => warnings.push(err.message), now: () => now });
      expect(next()).toBe('first-token');
      // Rotation as Kubernetes does it: a new file renamed over the old one.
      writeFileSync(`${file}.new`, '  second-token  \n');
      renameSync(`${file}.new`, file);
      now = 999;
      expect(next()).toBe('first-token');
      now = 1_000;
      expect(await next()).toBe('second-token');
      // Until the next refresh the token is at hand: no read, no await.
      expect(next()).toBe('second-token');
      rmSync(file);
      now = 2_000;
      expect(await next()).toBe('second-token');
      expect(warnings).toHaveLength(1);
      writeFileSync(file, '\n');
      now = 3_000;
      expect(await next()).toBe('second-token');
      expect(warnings[1]).toMatch(/is empty/);
      // Half a rotation by hand: two tokens in one file. Sent, it would fail every request.
      writeFileSync(file, 'third-token\nfourth-token\n');
      now = 4_000;
      expect(await next()).toBe('second-token');
      expect(warnings[2]).toBe(`token file ${file} holds a line break at position 12: a token is one word of printable ASCII`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shares one read between the requests that find the token due', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flashback-token-'));
    const file = join(dir, 'token');
    let now = 0;
    try {
      writeFileSync(file, 'first-token\n');
      const next = await fileTokenSource(file, { onError: () => {}, now: () => now });
      writeFileSync(file, 'second-token\n');
      now = 5_000;
      const [a, b] = [next(), next()];
      expect(a).toBe(b);
      expect(await a).toBe('second-token');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
