// The dashboard and the rules against the real thing: the built exporter in --demo mode, a second
// exporter polling a fake API that only ever answers 429 and 500 (so the error and health panels
// have something to show; after a 429 the exporter pauses all its requests, so the reason the
// second unit fails with is not pinned down), and Debian's Prometheus scraping both and
// evaluating prometheus/flashback-exporter.rules.yml every second. Every panel query goes through
// Prometheus's query API with the variables substituted as Grafana would substitute them.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interpolate, loadDashboard, parseLabelValues, queryPanels, variableQuery, type Selection } from './lib/grafana.js';
import { ensureBuilt, freePort, httpStatus, PrometheusClient, startChild, waitFor, type Child } from '../support/live.js';
import { allRules, RULES_FILE } from './lib/rules.js';
import { PROMTOOL_HINT, repoPath, requireTool, run } from '../support/tools.js';

const dashboard = loadDashboard();
const variables = dashboard.templating.list;
const panelQueries = queryPanels(dashboard).flatMap((panel) =>
  (panel.targets ?? []).map((t) => ({ name: `${panel.title} [${t.refId}]`, panel: panel.title ?? '', expr: t.expr ?? '' })),
);
const annotationQueries = (dashboard.annotations?.list ?? []).flatMap((a) => (a.expr ? [a.expr] : []));
const rules = allRules();

// A panel may rightly show nothing for some selections and moments; it is accepted empty only
// when its proof query (same variables) shows that this is the reason.
const DATA = 'job=~"$job", instance=~"$instance", target=~"$target", scope=~"$scope", model=~"$model", user_id=~"$user_id"';
const UNIT = 'job=~"$job", instance=~"$instance", target=~"$target", model=~"$model", user_id=~"$user_id"';
const NO_REQUESTS_YET = `sum(flashback_private_chat_requests{${DATA}}) == 0`;
const LEGITIMATELY_EMPTY: Record<string, { why: string; proof: string }> = {
  'Poll errors by reason': { why: 'the selected units never failed', proof: `absent(flashback_exporter_poll_errors_total{${UNIT}})` },
  // right after the hour a new bucket can hold tokens but no whole request yet
  'Tokens per request': { why: 'no request in the latest buckets yet', proof: NO_REQUESTS_YET },
  'Tokens per request, by target': { why: 'no request in the latest buckets yet', proof: NO_REQUESTS_YET },
};

const children: Child[] = [];
let tmp = '';
let fakeApi: Server | undefined;
let prom: PrometheusClient;
let demoInstance = '';
let faultyInstance = '';
const all: Record<string, Selection> = {};

function describeChildren(): string {
  return children.map((c) => c.output()).join('\n');
}

// A child that died will never become ready: say so at once instead of at the deadline.
function assertRunning(): void {
  const dead = children.filter((c) => c.process.exitCode !== null || c.process.signalCode !== null);
  if (dead.length > 0) throw new Error(`${dead.map((c) => c.name).join(', ')} exited early\n${describeChildren()}`);
}

async function nonEmpty(expr: string): Promise<boolean> {
  const r = await prom.query(expr);
  return r.status === 'success' && (r.data?.result.length ?? 0) > 0;
}

/** Run a panel query with a selection: an error, or no data without a proven reason, is a problem. */
async function panelProblem(q: { panel: string; name: string; expr: string }, selection: Record<string, Selection>): Promise<string | undefined> {
  const query = interpolate(q.expr, variables, selection);
  const r = await prom.query(query);
  if (r.status !== 'success') return `${q.name}: ${r.errorType}: ${r.error}\n  ${query}`;
  if ((r.data?.result.length ?? 0) > 0) return undefined;
  const excuse = LEGITIMATELY_EMPTY[q.panel];
  if (excuse && (await nonEmpty(interpolate(excuse.proof, variables, selection)))) return undefined;
  return `${q.name}: no data\n  ${query}`;
}

beforeAll(async () => {
  const prometheus = requireTool('prometheus', PROMTOOL_HINT);
  const main = await ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'flashback-live-'));

  // A Flashback API that rate-limits one organisation and fails on the other.
  fakeApi = createServer((req, res) => {
    const id = new URL(req.url ?? '/', 'http://fake').searchParams.get('id');
    if (id === 'org-limited') {
      res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '60' });
      res.end(JSON.stringify({ success: false, message: 'Too many requests' }));
    } else {
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ success: false, message: 'Internal server error' }));
    }
  });
  await new Promise<void>((resolve) => fakeApi!.listen(0, '127.0.0.1', resolve));
  const fakePort = (fakeApi.address() as { port: number }).port;
  const faultyConfig = join(tmp, 'faulty.yaml');
  writeFileSync(
    faultyConfig,
    readFileSync(new URL('../fixtures/deploy/faulty-exporter.yaml', import.meta.url), 'utf8').replaceAll('FAKE_API_PORT', String(fakePort)),
  );

  const [demoPort, faultyPort, promPort] = [await freePort(), await freePort(), await freePort()];
  demoInstance = `127.0.0.1:${demoPort}`;
  faultyInstance = `127.0.0.1:${faultyPort}`;
  children.push(startChild('exporter --demo', process.execPath, [main, '--demo', `--web.listen-address=${demoInstance}`, '--log.level=warn']));
  children.push(
    startChild('faulty exporter', process.execPath, [main, `--config.file=${faultyConfig}`, `--web.listen-address=${faultyInstance}`, '--log.level=error'], {
      FLASHBACK_TOKEN: 'not-a-real-token',
    }),
  );

  writeFileSync(
    join(tmp, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'rule_files:',
      `  - ${JSON.stringify(RULES_FILE)}`,
      'scrape_configs:',
      '  - job_name: flashback-exporter',
      '    static_configs:',
      `      - targets: [${JSON.stringify(demoInstance)}, ${JSON.stringify(faultyInstance)}]`,
      '',
    ].join('\n'),
  );
  children.push(
    startChild('prometheus', prometheus, [
      `--config.file=${join(tmp, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(tmp, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ]),
  );
  prom = new PrometheusClient(`http://127.0.0.1:${promPort}`);

  for (const instance of [demoInstance, faultyInstance]) {
    await waitFor(`${instance}/-/ready`, async () => (assertRunning(), (await httpStatus(`http://${instance}/-/ready`)) === 200), 30_000, describeChildren);
  }
  await waitFor('Prometheus to be ready', async () => (assertRunning(), (await httpStatus(`${prom.base}/-/ready`)) === 200), 30_000, describeChildren);

  // Data and recordings from both exporters, and their counters with two samples in range so
  // that rate() has something to say; then every panel with data, or the tests would race them.
  const firstData = [
    'count(count by (instance) (flashback_exporter_build_info)) == 2',
    'unit:flashback_private_chat_tokens:avg3h',
    'count(count by (instance) (rate(flashback_exporter_api_requests_total[1m]))) == 2',
    'rate(flashback_exporter_poll_errors_total{reason="rate_limited"}[1m])',
  ];
  for (const expr of firstData) await waitFor(`${expr} in Prometheus`, () => nonEmpty(expr), 45_000, describeChildren);
  let pending: (string | undefined)[] = [];
  await waitFor(
    'every panel query to return data',
    async () => {
      pending = await Promise.all(panelQueries.map((q) => panelProblem(q, all)));
      return pending.every((p) => p === undefined);
    },
    30_000,
    () => pending.filter(Boolean).join('\n'),
  );
}, 120_000);

afterAll(async () => {
  await Promise.all(children.map((c) => c.stop()));
  await new Promise<void>((resolve) => (fakeApi ? fakeApi.close(() => resolve()) : resolve()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the dashboard against a real Prometheus scraping the exporter', () => {
  it.each(panelQueries.map((q) => [q.name, q]))('returns data for "%s" with every variable on All', async (_name, q) => {
    expect(await panelProblem(q, all)).toBeUndefined();
  });

  it('offers values for every variable, each computed from the ones before it as Grafana does', async () => {
    const chosen: Record<string, Selection> = {};
    for (const v of variables.filter((x) => x.type === 'query')) {
      const lv = parseLabelValues(variableQuery(v))!;
      const values = await prom.labelValues(interpolate(lv.selector, variables, chosen), lv.label);
      expect(values.length, `values of $${v.name}`).toBeGreaterThan(0);
      chosen[v.name] = 'All';
    }
  });

  it('returns data for every panel when one value is picked per variable, as a user would pick them', async () => {
    // Walk the variables in order, each offered values filtered by the previous picks: the demo
    // exporter, its workspace broken down by model and user, one model, one user.
    const prefer: Record<string, string> = { instance: demoInstance, target: 'platform' };
    const picked: Record<string, Selection> = {};
    for (const v of variables.filter((x) => x.type === 'query')) {
      const lv = parseLabelValues(variableQuery(v))!;
      const values = await prom.labelValues(interpolate(lv.selector, variables, picked), lv.label);
      const value = prefer[v.name] && values.includes(prefer[v.name]!) ? prefer[v.name]! : values[0];
      expect(value, `a value for $${v.name}`).toBeDefined();
      picked[v.name] = [value!];
    }
    expect(picked).toMatchObject({ instance: [demoInstance], target: ['platform'] });
    const problems = [];
    for (const q of panelQueries) problems.push(await panelProblem(q, picked));
    expect(problems.filter(Boolean)).toEqual([]);
  });

  it('returns data for usage panels when several models are picked, as regex alternatives', async () => {
    const models = await prom.labelValues('flashback_private_chat_requests', 'model');
    expect(models.length).toBeGreaterThanOrEqual(2);
    const picked = { model: models.slice(0, 2) };
    for (const q of panelQueries.filter((x) => x.expr.includes('flashback_private_chat_'))) {
      expect(await panelProblem(q, picked)).toBeUndefined();
      const r = await prom.query(interpolate(q.expr, variables, picked));
      for (const s of r.data!.result) if (s.metric.model) expect(picked.model, `${q.name} shows model ${s.metric.model}`).toContain(s.metric.model);
    }
  });

  it('evaluates the annotation queries without errors', async () => {
    for (const expr of annotationQueries) {
      const r = await prom.query(interpolate(expr, variables, all));
      expect(r.status, JSON.stringify(r)).toBe('success');
    }
  });
});

describe('the rules in a real Prometheus', () => {
  it.each(rules.filter((r) => r.record).map((r) => [r.record!]))('record series for %s', async (record) => {
    await waitFor(`${record}`, () => nonEmpty(record), 15_000);
    const r = await prom.query(`${record}{target="platform"}`);
    // one series per poll unit of the demo's model x user matrix (3 x 2)
    expect(r.data?.result.length).toBe(6);
  });

  it('evaluate every rule without errors', async () => {
    const res = await prom.get<{ data: { groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] } }>('/api/v1/rules');
    const loaded = res.data.groups.flatMap((g) => g.rules);
    expect(loaded.length).toBe(rules.length);
    for (const r of loaded) expect({ rule: r.name, health: r.health, lastError: r.lastError ?? '' }).toEqual({ rule: r.name, health: 'ok', lastError: '' });
  });

  it('see real HTTP 429s from the exporter in the rate-limit alert and failing units in the unit-down alert', async () => {
    const byName = (name: string) => rules.find((r) => r.alert === name)!.expr;
    await waitFor('the rate-limit expression to see the 429s', () => nonEmpty(byName('FlashbackExporterRateLimited')), 30_000);
    const limited = await prom.query(byName('FlashbackExporterRateLimited'));
    expect(limited.data!.result.map((s) => s.metric.instance)).toEqual([faultyInstance]);

    const down = await prom.query(byName('FlashbackExporterUnitDown'));
    expect(down.data!.result.map((s) => s.metric.target).sort()).toEqual(['broken', 'limited']);

    // not yet firing: both wait for their `for:`
    const alerts = await prom.get<{ data: { alerts: { labels: Record<string, string>; state: string }[] } }>('/api/v1/alerts');
    const unitDown = alerts.data.alerts.filter((a) => a.labels.alertname === 'FlashbackExporterUnitDown');
    expect(unitDown.map((a) => [a.labels.target, a.state]).sort()).toEqual([
      ['broken', 'pending'],
      ['limited', 'pending'],
    ]);
  });

  it('stay silent about the healthy demo exporter', async () => {
    const alerts = await prom.get<{ data: { alerts: { labels: Record<string, string> }[] } }>('/api/v1/alerts');
    expect(alerts.data.alerts.filter((a) => a.labels.instance === demoInstance)).toEqual([]);
  });
});

describe('the configurations shipped for deployment', () => {
  it('pass the exporter\'s own --config.check: the Kubernetes ConfigMap\'s config.yaml', async () => {
    const main = await ensureBuilt();
    const cm = parse(readFileSync(repoPath('deploy/kubernetes/configmap.yaml'), 'utf8')) as { data: Record<string, string> };
    const file = join(tmp, 'configmap-config.yaml');
    writeFileSync(file, cm.data['config.yaml']!);
    const check = await run(process.execPath, [main, '--config.check', `--config.file=${file}`]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

});
