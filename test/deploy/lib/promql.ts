// PromQL as the official grammar (@prometheus-io/lezer-promql, the one Prometheus's own UI uses)
// sees it: syntax errors, vector selectors with their matchers, and range selectors with the
// function they feed. Semantics (types, functions a given Prometheus knows) are left to the real
// Prometheus in live.test.ts.
import { parser } from '@prometheus-io/lezer-promql';

type Tree = ReturnType<typeof parser.parse>;
type SyntaxNode = Tree['topNode'];

export interface SyntaxProblem {
  readonly at: number;
  readonly near: string;
}

/** Error nodes of the parse: empty when the expression is valid PromQL syntax. */
export function syntaxProblems(expr: string): SyntaxProblem[] {
  const problems: SyntaxProblem[] = [];
  if (expr.trim() === '') return [{ at: 0, near: '(empty expression)' }];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) problems.push({ at: node.from, near: expr.slice(Math.max(0, node.from - 20), node.from + 20) });
    },
  });
  return problems;
}

export interface Matcher {
  readonly name: string;
  readonly op: string;
  /** The string literal's content, quotes removed (no escape processing: not needed here). */
  readonly value: string;
}

export interface Selector {
  readonly text: string;
  readonly metric: string | undefined;
  readonly matchers: readonly Matcher[];
}

export interface RangeUse {
  /** The function the range selector is the argument of, e.g. `rate`, or undefined. */
  readonly fn: string | undefined;
  /** The range as written, e.g. `5m` or a placeholder that stood for a Grafana variable. */
  readonly range: string;
  readonly metric: string | undefined;
}

function walk(node: SyntaxNode, visit: (n: SyntaxNode) => void): void {
  visit(node);
  for (let child = node.firstChild; child; child = child.nextSibling) walk(child, visit);
}

function parseValid(expr: string): SyntaxNode {
  const problems = syntaxProblems(expr);
  if (problems.length > 0) throw new Error(`invalid PromQL near ${JSON.stringify(problems[0]?.near)}: ${expr}`);
  return parser.parse(expr).topNode;
}

function selectorOf(node: SyntaxNode, expr: string): Selector {
  const ident = node.getChild('Identifier');
  const matchers: Matcher[] = [];
  const list = node.getChild('LabelMatchers');
  if (list) {
    for (let m = list.firstChild; m; m = m.nextSibling) {
      const name = m.getChild('LabelName');
      const op = m.getChild('MatchOp');
      const str = m.getChild('StringLiteral');
      if (!name || !op || !str) continue;
      matchers.push({
        name: expr.slice(name.from, name.to),
        op: expr.slice(op.from, op.to),
        value: expr.slice(str.from + 1, str.to - 1),
      });
    }
  }
  return { text: expr.slice(node.from, node.to), metric: ident ? expr.slice(ident.from, ident.to) : undefined, matchers };
}

/** Every vector selector of the expression, including those inside range selectors. */
export function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  walk(parseValid(expr), (n) => {
    if (n.name === 'VectorSelector') out.push(selectorOf(n, expr));
  });
  return out;
}

/** Every range selector `x[range]` and the function it is passed to. */
export function rangeUses(expr: string): RangeUse[] {
  const out: RangeUse[] = [];
  walk(parseValid(expr), (n) => {
    if (n.name !== 'MatrixSelector') return;
    const duration = n.getChild('DurationExpr') ?? n.lastChild;
    const vector = n.getChild('VectorSelector');
    // MatrixSelector -> FunctionCallBody -> FunctionCall(FunctionIdentifier(...))
    const call = n.parent?.name === 'FunctionCallBody' ? n.parent.parent : null;
    const ident = call?.name === 'FunctionCall' ? call.getChild('FunctionIdentifier') : null;
    out.push({
      fn: ident ? expr.slice(ident.from, ident.to) : undefined,
      range: duration ? expr.slice(duration.from, duration.to) : '',
      metric: vector ? selectorOf(vector, expr).metric : undefined,
    });
  });
  return out;
}

/** Metric names a query reads. */
export function metricNames(expr: string): string[] {
  return [...new Set(selectors(expr).flatMap((s) => (s.metric ? [s.metric] : [])))];
}
