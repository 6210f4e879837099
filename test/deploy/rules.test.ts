// The recording and alerting rules: checked and unit-tested by the real promtool, parsed with the
// official PromQL grammar, and held to the conventions the Prometheus docs set for rules.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { metricNames, syntaxProblems } from './lib/promql.js';
import { allRules, loadRuleGroups, RULES_FILE, ruleTestFiles } from './lib/rules.js';
import { PROMTOOL_HINT, requireTool, run } from '../support/tools.js';

const groups = loadRuleGroups();
const rules = allRules(groups);
const recordings = rules.flatMap((r) => (r.record ? [r.record] : []));
const alerts = rules.filter((r) => r.alert);
const metrics = JSON.parse(readFileSync(new URL('../fixtures/deploy/exporter-metrics.json', import.meta.url), 'utf8')) as Record<string, string[]>;

let promtool = '';
beforeAll(() => {
  promtool = requireTool('promtool', PROMTOOL_HINT);
});

describe('the Prometheus rules', () => {
  it('pass promtool check rules', async () => {
    const result = await run(promtool, ['check', 'rules', RULES_FILE]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it.each(ruleTestFiles().map((f) => [basename(f), f]))('pass their promtool unit tests in %s', async (_name, file) => {
    const result = await run(promtool, ['test', 'rules', file]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('SUCCESS');
  });

  it('have a firing unit test for every alert, and a silent one for each usage alert', () => {
    const fired = new Set<string>();
    const silent = new Set<string>();
    for (const file of ruleTestFiles()) {
      const doc = parse(readFileSync(file, 'utf8')) as {
        tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
      };
      for (const t of doc.tests.flatMap((x) => x.alert_rule_test ?? [])) {
        ((t.exp_alerts ?? []).length > 0 ? fired : silent).add(t.alertname);
      }
    }
    expect([...alerts.map((a) => a.alert!)].filter((a) => !fired.has(a))).toEqual([]);
    expect(silent).toContain('FlashbackPrivateChatTokenSpike');
    expect(silent).toContain('FlashbackPrivateChatSustainedHighUsage');
  });

  it('parse with the PromQL grammar', () => {
    for (const r of rules) expect(syntaxProblems(r.expr), r.record ?? r.alert).toEqual([]);
  });

  it('name recordings level:metric:operations and define each once, before it is used', () => {
    const seen = new Set<string>();
    for (const r of rules) {
      for (const used of metricNames(r.expr)) {
        if (recordings.includes(used)) expect(seen.has(used), `${r.record ?? r.alert} reads ${used} before it is recorded`).toBe(true);
      }
      if (!r.record) continue;
      expect(r.record).toMatch(/^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$/);
      expect(r.record.split(':')[1]).toMatch(/^flashback_/);
      expect(seen.has(r.record), `${r.record} recorded twice`).toBe(false);
      seen.add(r.record);
    }
    expect(recordings.length).toBeGreaterThan(0);
  });

  it('give every alert a for duration, a severity, a static summary and a templated description', () => {
    for (const a of alerts) {
      expect(a.alert).toMatch(/^Flashback[A-Za-z]+$/);
      expect(a.for, a.alert).toMatch(/^\d+[smhdw]$/);
      expect(['warning', 'critical'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.summary, `${a.alert}: a static summary groups well in notifications`).not.toContain('{{');
      expect(a.annotations?.description, a.alert).toMatch(/\{\{[^}]*\$(labels|value)[^}]*\}\}/);
    }
  });

  it('alert on a token spike, sustained high usage, a unit down, stale data, rate limiting and a failed config reload', () => {
    expect(alerts.map((a) => a.alert)).toEqual(
      expect.arrayContaining([
        'FlashbackPrivateChatTokenSpike',
        'FlashbackPrivateChatSustainedHighUsage',
        'FlashbackExporterUnitDown',
        'FlashbackExporterDataStale',
        'FlashbackExporterRateLimited',
        'FlashbackExporterConfigReloadFailed',
      ]),
    );
  });

  it('read only metrics the exporter publishes, their own recordings and up', () => {
    const known = new Set([...metrics.data!, ...metrics.unit!, ...metrics.process!, 'up', ...recordings]);
    for (const r of rules) {
      for (const m of metricNames(r.expr)) expect(known.has(m), `${r.record ?? r.alert} reads ${m}`).toBe(true);
    }
  });

  it('keep every group name unique', () => {
    const names = groups.map((g) => g.name);
    expect(new Set(names).size).toBe(names.length);
  });
});
