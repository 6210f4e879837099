// The Grafana dashboard, checked as grafana/dashboard-linter would check it (its rules reimplemented
// here: it is a Go tool this machine cannot fetch) and every query parsed with the official PromQL
// grammar after Grafana's variable substitution. live.test.ts runs the same queries on Prometheus.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  allPanels,
  interpolate,
  loadDashboard,
  parseLabelValues,
  queryPanels,
  substituteBuiltins,
  variableQuery,
  type GrafanaPanel,
  type Selection,
} from './lib/grafana.js';
import { metricNames, rangeUses, selectors, syntaxProblems } from './lib/promql.js';

const dashboard = loadDashboard();
const variables = dashboard.templating.list;
const fixture = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`../fixtures/deploy/${name}`, import.meta.url), 'utf8'));
const knownUnits = new Set((fixture('grafana-units.json') as { units: string[] }).units);
const metrics = fixture('exporter-metrics.json') as Record<string, string[]>;
const exporterMetrics = new Set([...metrics.data!, ...metrics.unit!, ...metrics.process!]);

const FILTER_VARIABLES = ['job', 'instance', 'target', 'scope', 'model', 'user_id'] as const;
const TEMPLATED_DS = new Set(['${datasource}', '$datasource']);

const queries = queryPanels(dashboard).flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({ panel: panel.title ?? '?', refId: target.refId ?? '?', expr: target.expr ?? '' })),
);
const annotationQueries = (dashboard.annotations?.list ?? []).flatMap((a) => (a.expr ? [a.expr] : []));

// The selections a user can make: everything, one value, several values.
const selections: Record<string, Record<string, Selection>> = {
  'All everywhere': {},
  'one value each': Object.fromEntries(FILTER_VARIABLES.map((v) => [v, ['acme']])),
  'several values with regex metacharacters': Object.fromEntries(FILTER_VARIABLES.map((v) => [v, ['claude-3.5', 'gpt-4o+tools']])),
};

// The builtins replaced by durations no query would use, so range selectors can be told apart.
const MARKED_BUILTINS = { __rate_interval: '7777s', __range: '8888s', __interval: '9999s', __range_s: '8888' };

function datasourceUid(ds: GrafanaPanel['datasource']): string | undefined {
  return typeof ds === 'string' ? ds : (ds?.uid ?? undefined);
}

describe('the Grafana dashboard', () => {
  it('is classic dashboard JSON that works imported and provisioned: no __inputs, a stable uid, tags, no fixed id', () => {
    expect(dashboard.__inputs).toBeUndefined();
    expect(dashboard.__requires).toBeUndefined();
    expect(dashboard.uid).toBe('flashback-private-chat');
    expect(dashboard.id ?? null).toBeNull();
    expect(dashboard.title).toBe('Flashback private chat');
    expect(dashboard.tags).toEqual(expect.arrayContaining(['flashback', 'flashback-exporter']));
    expect(typeof dashboard.schemaVersion).toBe('number');
  });

  it('has a Prometheus data source variable named datasource and labelled Data source (template-datasource-rule)', () => {
    const ds = variables.filter((v) => v.type === 'datasource');
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ name: 'datasource', label: 'Data source', query: 'prometheus' });
  });

  it.each(FILTER_VARIABLES)(
    'has a multi-select $0 variable with All, on the templated data source, refreshed on time range change',
    (name) => {
      const v = variables.find((x) => x.name === name);
      expect(v, `variable ${name}`).toBeDefined();
      expect(v).toMatchObject({ type: 'query', multi: true, includeAll: true, refresh: 2 });
      expect(TEMPLATED_DS.has(datasourceUid(v!.datasource) ?? '')).toBe(true);
      expect(parseLabelValues(variableQuery(v!))?.label).toBe(name);
    },
  );

  it('labels the job and instance variables Job and Instance with All meaning any value (template-job/instance-rule)', () => {
    expect(variables.find((v) => v.name === 'job')).toMatchObject({ label: 'Job', allValue: '.+' });
    expect(variables.find((v) => v.name === 'instance')).toMatchObject({ label: 'Instance', allValue: '.+' });
  });

  it('makes All on model and user_id match unfiltered targets too, whose filter labels are empty', () => {
    // `model=~".+"` would drop every series of a target without a model filter
    for (const name of ['model', 'user_id']) expect(variables.find((v) => v.name === name)?.allValue).toBe('.*');
    for (const name of ['target', 'scope']) expect(variables.find((v) => v.name === name)?.allValue).toBe('.+');
  });

  it('has variable queries of the form label_values(selector, label) with a valid selector (template-label-promql-rule)', () => {
    for (const v of variables.filter((x) => x.type === 'query')) {
      const lv = parseLabelValues(variableQuery(v));
      expect(lv, `${v.name}: ${variableQuery(v)}`).toBeDefined();
      expect(syntaxProblems(interpolate(lv!.selector, variables, {})), v.name).toEqual([]);
      expect(v.definition, `${v.name}'s definition shows its query`).toBe(variableQuery(v));
    }
  });

  it('uses the templated data source on every panel and every query (panel-datasource-rule)', () => {
    for (const panel of queryPanels(dashboard)) {
      expect(TEMPLATED_DS.has(datasourceUid(panel.datasource) ?? ''), panel.title).toBe(true);
      for (const t of panel.targets ?? []) expect(TEMPLATED_DS.has(t.datasource?.uid ?? ''), `${panel.title} ${t.refId}`).toBe(true);
    }
  });

  it('gives every panel a title, a description, at least one query and a unit Grafana knows (panel-title-description, panel-units, panel-no-targets)', () => {
    for (const panel of queryPanels(dashboard)) {
      expect(panel.title, `panel ${panel.id}`).toBeTruthy();
      expect(panel.description?.length ?? 0, `${panel.title} has a description`).toBeGreaterThan(20);
      expect(panel.targets?.length ?? 0, `${panel.title} has queries`).toBeGreaterThan(0);
      const unit = panel.fieldConfig?.defaults?.unit;
      expect(unit && knownUnits.has(unit), `${panel.title}: unit ${unit}`).toBe(true);
    }
  });

  it('has unique panel ids and refIds, and panels that do not overlap', () => {
    const panels = allPanels(dashboard);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
    }
    const boxes = dashboard.panels.map((p) => ({ title: p.title, ...p.gridPos! }));
    for (const [i, a] of boxes.entries()) {
      expect(a.x + a.w, a.title).toBeLessThanOrEqual(24);
      for (const b of boxes.slice(i + 1)) {
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });

  it.each(Object.keys(selections))('parses every query with the PromQL grammar after substitution: %s', (name) => {
    for (const q of [...queries.map((x) => x.expr), ...annotationQueries]) {
      const expr = interpolate(q, variables, selections[name]!);
      expect(syntaxProblems(expr), expr).toEqual([]);
    }
  });

  it('filters every selector of every query by $job and $instance (target-job-rule, target-instance-rule)', () => {
    for (const { panel, expr } of queries) {
      for (const s of selectors(substituteBuiltins(expr, MARKED_BUILTINS))) {
        expect(s.matchers, `${panel}: ${s.text}`).toEqual(
          expect.arrayContaining([
            { name: 'job', op: '=~', value: '$job' },
            { name: 'instance', op: '=~', value: '$instance' },
          ]),
        );
      }
    }
  });

  it('takes every rate over $__rate_interval and reads counters only through rate or increase (target-rate-interval-rule, target-counter-agg-rule)', () => {
    let rates = 0;
    for (const { panel, expr } of queries) {
      const marked = substituteBuiltins(expr, MARKED_BUILTINS);
      for (const use of rangeUses(marked)) {
        if (use.fn === 'rate' || use.fn === 'irate') {
          rates += 1;
          expect(use.range, `${panel}: ${use.fn}(${use.metric})`).toBe(MARKED_BUILTINS.__rate_interval);
        }
      }
      const counted = new Set(rangeUses(marked).filter((u) => ['rate', 'irate', 'increase'].includes(u.fn ?? '')).map((u) => u.metric));
      for (const s of selectors(marked)) {
        if (s.metric?.endsWith('_total')) expect(counted.has(s.metric), `${panel}: ${s.metric} outside rate()`).toBe(true);
      }
    }
    expect(rates).toBeGreaterThan(0);
  });

  it('reads only metrics the exporter publishes, and shows every one of them', () => {
    const read = new Set(queries.flatMap(({ expr }) => metricNames(substituteBuiltins(expr, MARKED_BUILTINS))));
    for (const m of read) expect(exporterMetrics.has(m), `unknown metric ${m}`).toBe(true);
    expect([...exporterMetrics].filter((m) => !read.has(m))).toEqual([]);
  });

  it('has the panels the issue asks for: tokens by target and by model, requests, tokens per request, top models and users, p50/p90, health', () => {
    const exprOf = (title: RegExp): string[] =>
      queryPanels(dashboard)
        .filter((p) => title.test(p.title ?? ''))
        .flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
    const required: [RegExp, RegExp][] = [
      [/^Input tokens per bucket, by target$/, /sum by \(target\b.*flashback_private_chat_input_tokens/s],
      [/^Output tokens per bucket, by target$/, /sum by \(target\b.*flashback_private_chat_output_tokens/s],
      [/^Input tokens per bucket, by model$/, /sum by \(model\b.*flashback_private_chat_input_tokens/s],
      [/^Output tokens per bucket, by model$/, /sum by \(model\b.*flashback_private_chat_output_tokens/s],
      [/^Requests per bucket, by target$/, /flashback_private_chat_requests/],
      [/^Tokens per request, by target$/, /\/[\s\S]*flashback_private_chat_requests/],
      [/^Top models/, /topk\(10,[\s\S]*by \(model\)/],
      [/^Top users/, /topk\(10,[\s\S]*by \(user_id\)/],
      [/p50 and p90/, /stat="p90"/],
      [/p50 and p90/, /stat="p50"/],
      [/^Poll unit state$/, /flashback_exporter_target_up/],
      [/^Age of the last successful poll$/, /time\(\) - .*flashback_exporter_last_success_timestamp_seconds/s],
      [/^Poll duration$/, /flashback_exporter_poll_duration_seconds/],
      [/^Poll errors by reason$/, /sum by \(reason\)/],
      [/^API requests by status code$/, /sum by \(code\)/],
    ];
    for (const [title, expr] of required) {
      const found = exprOf(title);
      expect(found.length, `a panel titled ${title}`).toBeGreaterThan(0);
      expect(found.some((e) => expr.test(e)), `${title} queries ${expr}`).toBe(true);
    }
  });

  it('would catch a broken query or an undefined variable', () => {
    // the checks above are only worth something if they can fail
    expect(syntaxProblems('sum by (target) (flashback_private_chat_input_tokens{job=~".+"}')).not.toEqual([]);
    expect(() => interpolate('flashback_exporter_target_up{target=~"$tagret"}', variables, {})).toThrow(/tagret/);
    expect(interpolate('x{model=~"$model"}', variables, { model: ['claude-3.5', 'gpt-4o'] })).toBe('x{model=~"(claude-3\\\\.5|gpt-4o)"}');
  });
});
