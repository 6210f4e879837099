// The dashboard as Grafana reads it, and Grafana's substitution of template variables into
// Prometheus queries (public/app/plugins/datasource/prometheus: interpolateQueryExpr).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DASHBOARD_PATH = fileURLToPath(new URL('../../../grafana/flashback-private-chat.json', import.meta.url));

export interface GrafanaTarget {
  expr?: string;
  refId?: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  format?: string;
  datasource?: { type?: string; uid?: string };
}

export interface GrafanaPanel {
  id?: number;
  type: string;
  title?: string;
  description?: string;
  datasource?: { type?: string; uid?: string } | string | null;
  gridPos?: { h: number; w: number; x: number; y: number };
  fieldConfig?: { defaults?: { unit?: string }; overrides?: unknown[] };
  targets?: GrafanaTarget[];
  panels?: GrafanaPanel[];
  collapsed?: boolean;
}

export interface GrafanaVariable {
  name: string;
  label?: string;
  type: string;
  query?: string | { query: string };
  definition?: string;
  datasource?: { type?: string; uid?: string } | string | null;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string | null;
  refresh?: number;
}

export interface Dashboard {
  uid?: string;
  id?: number | null;
  title?: string;
  tags?: string[];
  __inputs?: unknown;
  panels: GrafanaPanel[];
  templating: { list: GrafanaVariable[] };
  annotations?: { list: { expr?: string; datasource?: unknown; builtIn?: number }[] };
  [key: string]: unknown;
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
}

/** Every panel, rows' nested (collapsed) panels included; rows themselves too. */
export function allPanels(d: Dashboard): GrafanaPanel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** Panels that query data (everything but rows and text panels). */
export function queryPanels(d: Dashboard): GrafanaPanel[] {
  return allPanels(d).filter((p) => p.type !== 'row' && p.type !== 'text');
}

export function variableQuery(v: GrafanaVariable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
}

/** `label_values(<selector>, <label>)` split into its parts, as Grafana's variable editor does. */
export function parseLabelValues(query: string): { selector: string; label: string } | undefined {
  const m = /^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/s.exec(query);
  return m ? { selector: m[1]!.trim(), label: m[2]! } : undefined;
}

/** A variable's selection: 'All', or the values picked. */
export type Selection = 'All' | readonly string[];

/** Grafana's built-in interval variables, as it substitutes them for a 24h range. */
export const DEFAULT_BUILTINS: Readonly<Record<string, string>> = {
  __rate_interval: '1m',
  __interval: '15s',
  __range: '86400s',
  __range_s: '86400',
};

// prometheusSpecialRegexEscape: the value goes into a regex inside a PromQL string literal.
function regexEscape(value: string): string {
  return value.replace(/\\/g, '\\\\\\\\').replace(/[$^*+?.()|{}[\]]/g, '\\\\$&');
}

/**
 * Substitute `$var` and `${var}` as Grafana would: All becomes the variable's allValue verbatim,
 * one value its regex-escaped self, several values `(a|b)`. Throws on a variable the dashboard
 * does not define, so a misspelt `$tagret` is caught rather than sent as text.
 */
export function interpolate(
  expr: string,
  variables: readonly GrafanaVariable[],
  selection: Readonly<Record<string, Selection>>,
  builtins: Readonly<Record<string, string>> = DEFAULT_BUILTINS,
): string {
  const byName = new Map(variables.map((v) => [v.name, v]));
  return expr.replace(/\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)/g, (_m, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    if (name in builtins) return builtins[name]!;
    const v = byName.get(name);
    if (!v) throw new Error(`query uses $${name}, which the dashboard does not define: ${expr}`);
    const sel = selection[name] ?? 'All';
    if (sel === 'All') {
      if (!v.includeAll) throw new Error(`$${name} has no All option`);
      if (v.allValue == null) throw new Error(`$${name} has no custom allValue; Grafana would expand every value`);
      return v.allValue;
    }
    if (sel.length === 0) throw new Error(`no value selected for $${name}`);
    if (!v.multi && !v.includeAll) return sel[0]!;
    const escaped = sel.map(regexEscape);
    return escaped.length === 1 ? escaped[0]! : `(${escaped.join('|')})`;
  });
}

/**
 * Replace only Grafana's built-in interval variables, leaving `$job` and the like as they are
 * (inside label matchers they are valid PromQL strings): for checks on how a query uses them.
 */
export function substituteBuiltins(expr: string, builtins: Readonly<Record<string, string>>): string {
  return expr.replace(/\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)/g, (m, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    return name in builtins ? builtins[name]! : m;
  });
}
