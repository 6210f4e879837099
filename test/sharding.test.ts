// The sharded Kubernetes variant: a StatefulSet whose replicas derive --shard from their pod
// name. Parsed from the manifests as a cluster would run them (the kubelet expanding $(VAR) in
// args), every replica's flags must be valid and the replicas must poll every unit exactly once.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { Service } from 'kubernetes-models/v1/Service';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { parseFlags, FlagError } from '../src/cli/flags.js';
import { describePlan } from '../src/cli/check.js';
import { parseConfig } from '../src/config/load.js';
import { expandUnits } from '../src/config/units.js';
import { imageNodeFlags } from './support/tools.js';

const DIR = new URL('../deploy/kubernetes/sharded/', import.meta.url);

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
interface Manifest {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}
interface StatefulSetSpec {
  replicas: number;
  serviceName: string;
  selector: { matchLabels: Record<string, string> };
  template: {
    metadata: { labels: Record<string, string> };
    spec: { containers: { name: string; args: string[]; env?: EnvVar[]; ports: { name: string; containerPort: number }[] }[] };
  };
}

function load(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(new URL(file, DIR), 'utf8')).map((doc) => doc.toJS() as Manifest);
}

const kustomization = load('kustomization.yaml')[0] as unknown as { resources: string[] };
const manifests = kustomization.resources.flatMap(load);
const statefulSet = manifests.find((m) => m.kind === 'StatefulSet')!;
const spec = statefulSet.spec as unknown as StatefulSetSpec;
const container = spec.template.spec.containers[0]!;

/** The container's args in one pod, as the kubelet passes them: $(VAR) expanded from the env. */
function podArgs(ordinal: number): string[] {
  const podName = `${statefulSet.metadata.name}-${ordinal}`;
  const env = Object.fromEntries(
    (container.env ?? []).map((e) => {
      if (e.value !== undefined) return [e.name, e.value];
      const field = e.valueFrom?.fieldRef?.fieldPath;
      if (field === 'metadata.name') return [e.name, podName];
      throw new Error(`env ${e.name}: a source this test does not model (${JSON.stringify(e.valueFrom)})`);
    }),
  );
  return container.args.map((arg) => arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole));
}

// A configuration of a large organisation, in the shape users write: filter matrices.
const CONFIG = `
api:
  baseUrl: http://127.0.0.1:1
defaults:
  summary: true
targets:
  - name: acme
    scope: org
    id: org-1
  - name: eng
    scope: workspace
    id: ws-42
    filters:
      model: [gpt-4o, gpt-4o-mini, claude-sonnet-4, claude-opus-4, gemini-2.5-pro, o3, llama-3.3-70b, mistral-large]
      userId: [${Array.from({ length: 60 }, (_, i) => `u-${i}`).join(', ')}]
  - name: repos
    scope: repo
    id: repo-9
    filters:
      aiLlmId: [${Array.from({ length: 37 }, (_, i) => `llm-${i}`).join(', ')}]
`;

describe('the sharded StatefulSet', () => {
  it('validates against the Kubernetes schemas', () => {
    expect(() => new StatefulSet(statefulSet as never).validate()).not.toThrow();
    expect(() => new Service(manifests.find((m) => m.kind === 'Service') as never).validate()).not.toThrow();
  });

  it('runs the container as locked down as the single-replica Deployment', () => {
    const single = parseAllDocuments(readFileSync(new URL('../deployment.yaml', DIR), 'utf8'))[0]!.toJS() as Manifest;
    const pod = (single.spec as unknown as { template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[] } } }).template.spec;
    const ours = spec.template.spec as unknown as Record<string, unknown>;
    for (const key of ['securityContext', 'automountServiceAccountToken', 'enableServiceLinks', 'volumes']) expect(ours[key], key).toEqual(pod[key]);
    const theirs = pod.containers[0]!;
    const mine = container as unknown as Record<string, unknown>;
    for (const key of ['image', 'securityContext', 'livenessProbe', 'readinessProbe', 'volumeMounts', 'ports']) expect(mine[key], key).toEqual(theirs[key]);
  });

  it('is a StatefulSet with a headless governing Service that selects its pods', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual(['Service', 'StatefulSet']);
    const service = manifests.find((m) => m.kind === 'Service')!;
    expect(spec.serviceName).toBe(service.metadata.name);
    expect(service.spec.clusterIP).toBe('None');
    const selector = service.spec.selector as Record<string, string>;
    expect(spec.template.metadata.labels).toMatchObject(selector);
    expect(spec.template.metadata.labels).toMatchObject(spec.selector.matchLabels);
    const port = (service.spec.ports as { targetPort: string }[])[0]!.targetPort;
    expect(container.ports.map((p) => p.name)).toContain(port);
  });

  it('gives each of its replicas valid flags: --total-shards equal to replicas, and its own --shard', () => {
    expect(spec.replicas).toBeGreaterThan(1);
    const flags = Array.from({ length: spec.replicas }, (_, ordinal) => parseFlags(podArgs(ordinal)));
    for (const f of flags) expect(f.totalShards).toBe(spec.replicas);
    expect(flags.map((f) => f.shard)).toEqual(Array.from({ length: spec.replicas }, (_, i) => i));
    // A replica added without raising --total-shards fails at start instead of polling nothing.
    expect(() => parseFlags(podArgs(spec.replicas))).toThrow(FlagError);
  });

  it('sets a heap ceiling in NODE_OPTIONS that Node accepts', () => {
    const options = container.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
    expect(options).toMatch(/--max-old-space-size=\d+/);
    // As the pod runs it: the image's own node flags, then NODE_OPTIONS.
    const result = spawnSync(process.execPath, [...imageNodeFlags(), '-e', 'process.stdout.write(String(require("v8").getHeapStatistics().heap_size_limit))'], {
      env: { ...process.env, NODE_OPTIONS: options },
      encoding: 'utf8',
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    // The heap limit is the old space's plus the young generation's.
    expect(Number(result.stdout)).toBeLessThan(400 * 2 ** 20);
  });

  it('polls every unit exactly once across its replicas', () => {
    const loaded = parseConfig(CONFIG, 'sharded.yaml');
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const all = expandUnits(loaded.config).map((u) => u.key);
    expect(all.length).toBe(1 + 8 * 60 + 37);
    const shares = Array.from({ length: spec.replicas }, (_, ordinal) => {
      const { shard, totalShards } = parseFlags(podArgs(ordinal));
      return expandUnits(loaded.config, { shard, totalShards }).map((u) => u.key);
    });
    for (const share of shares) expect(share.length).toBeGreaterThan(0);
    const polled = shares.flat();
    expect(new Set(polled).size).toBe(polled.length);
    expect([...polled].sort()).toEqual([...all].sort());
  });

  it('is what --config.check describes, shard by shard', () => {
    const loaded = parseConfig(CONFIG, 'sharded.yaml');
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const { shard, totalShards } = parseFlags(podArgs(1));
    const plan = describePlan(loaded.config, 'sharded.yaml', { shard, totalShards });
    const rows = plan.split('\n').filter((l) => /^\d+( \(this one\))?\s/.test(l));
    expect(rows).toHaveLength(totalShards);
    expect(rows[1]).toContain('(this one)');
    const units = rows.map((r) => Number(r.replace(' (this one)', '').trim().split(/\s+/)[1]));
    for (let s = 0; s < totalShards; s++) expect(units[s]).toBe(expandUnits(loaded.config, { shard: s, totalShards }).length);
  });
});

describe('--shard', () => {
  it('takes a whole number, or the ordinal at the end of a StatefulSet pod name', () => {
    expect(parseFlags(['--shard=2', '--total-shards=3']).shard).toBe(2);
    expect(parseFlags(['--shard=flashback-exporter-2', '--total-shards=3']).shard).toBe(2);
    expect(parseFlags(['--shard=exporter.eu-west-1-12', '--total-shards=13']).shard).toBe(12);
  });

  it('refuses anything else with a one-line error', () => {
    for (const bad of ['', '-1', 'flashback-exporter', 'flashback-exporter-', '$(POD_NAME)', 'x-1.5']) {
      expect(() => parseFlags([`--shard=${bad}`, '--total-shards=3']), bad).toThrow(/^invalid value ".*" for flag --shard: must be a whole number >= 0, or a StatefulSet pod name ending in -<ordinal>$/);
    }
  });
});
