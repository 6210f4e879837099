// The Prometheus rule files, parsed.
import { readdirSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { repoPath } from '../../support/tools.js';

export const RULES_FILE = repoPath('prometheus/flashback-exporter.rules.yml');
export const RULE_TESTS_DIR = repoPath('prometheus/tests');

export interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RuleGroup {
  name: string;
  interval?: string;
  rules: Rule[];
}

export function loadRuleGroups(path = RULES_FILE): RuleGroup[] {
  return (parse(readFileSync(path, 'utf8')) as { groups: RuleGroup[] }).groups;
}

export function allRules(groups = loadRuleGroups()): Rule[] {
  return groups.flatMap((g) => g.rules);
}

export function ruleTestFiles(): string[] {
  return readdirSync(RULE_TESTS_DIR)
    .filter((f) => f.endsWith('.test.yml'))
    .sort()
    .map((f) => `${RULE_TESTS_DIR}/${f}`);
}
