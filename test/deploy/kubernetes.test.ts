// The Kubernetes manifests: parsed, validated against the Kubernetes and Prometheus Operator
// OpenAPI schemas (kubernetes-models), and checked for what a cluster cannot tell us until it is
// too late: the lock-down, the probes, the token as a file, and labels and ports that line up.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { loadRuleGroups, RULES_FILE } from './lib/rules.js';
import { repoPath, run } from '../support/tools.js';

const DIR = repoPath('deploy/kubernetes');

interface Manifest {
  file: string;
  kind: string;
  apiVersion: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
const manifests: Manifest[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))
    .filter((doc) => doc.contents !== null)
    .map((doc) => ({ ...(doc.toJS() as Omit<Manifest, 'file'>), file }) as Manifest),
);
const one = (kind: string): Manifest => {
  const found = manifests.filter((m) => m.kind === kind);
  expect(found, `one ${kind}`).toHaveLength(1);
  return found[0]!;
};

// Typed views of what the checks read; the schemas validate the rest.
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports: { name: string; containerPort: number }[];
  securityContext: Record<string, unknown> & { capabilities?: { drop?: string[]; add?: string[] } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[] };
  secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string }[] };
}
interface DeploymentSpec {
  replicas: number;
  selector: { matchLabels: Record<string, string> };
  template: {
    metadata: { labels: Record<string, string> };
    spec: {
      automountServiceAccountToken?: boolean;
      securityContext: Record<string, unknown> & { seccompProfile?: { type: string } };
      containers: Container[];
      volumes: Volume[];
    };
  };
}

const deployment = () => one('Deployment') as Manifest & { spec: DeploymentSpec };
const container = () => deployment().spec.template.spec.containers[0]!;
const volumeOf = (mount: { name: string }) => deployment().spec.template.spec.volumes.find((v) => v.name === mount.name)!;
const argValue = (flag: string) => container().args?.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);

const temps: string[] = [];
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

describe('the Kubernetes manifests', () => {
  it('parse as YAML without errors or warnings', () => {
    for (const file of files) {
      for (const doc of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))) {
        expect(doc.errors, file).toEqual([]);
        expect(doc.warnings, file).toEqual([]);
      }
    }
    expect(manifests.map((m) => m.kind)).toEqual(
      expect.arrayContaining(['ConfigMap', 'Deployment', 'Kustomization', 'PrometheusRule', 'Secret', 'Service', 'ServiceMonitor']),
    );
  });

  it('validate against the Kubernetes and Prometheus Operator schemas', () => {
    // StatefulSet: for the sharded variant that is to come
    const models: Record<string, new (data: never) => { validate(): void }> = {
      Deployment,
      StatefulSet,
      Service,
      ConfigMap,
      Secret,
      ServiceMonitor,
      PrometheusRule,
    };
    for (const m of manifests.filter((x) => x.kind !== 'Kustomization')) {
      const { file: _file, ...data } = m;
      const Model = models[m.kind];
      expect(Model, `a schema for ${m.kind}`).toBeDefined();
      expect(() => new Model!(data as never).validate(), `${m.file}`).not.toThrow();
    }
  });

  it('would reject a manifest with a mistyped field', () => {
    const { file: _file, ...data } = deployment();
    const broken = structuredClone(data) as unknown as { spec: DeploymentSpec };
    (broken.spec.template.spec.containers[0]!.securityContext as Record<string, unknown>).readOnlyRootFilesystem = 'yes';
    expect(() => new Deployment(broken as never).validate()).toThrow(/readOnlyRootFilesystem/);
  });

  it('run the exporter locked down: non-root, read-only root, no privilege escalation, all capabilities dropped', () => {
    const pod = deployment().spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container().securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(container().securityContext.privileged ?? false).toBe(false);
    expect(container().securityContext.capabilities?.add ?? []).toEqual([]);
  });

  it('run one replica, so the Flashback API is not polled twice for the same data', () => {
    expect(deployment().spec.replicas).toBe(1);
    expect((deployment().spec as unknown as { strategy?: { type: string } }).strategy?.type).toBe('Recreate');
  });

  it('probe liveness on /-/healthy and readiness on /-/ready, on the metrics port', () => {
    const c = container();
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/-/healthy', port: 'metrics' });
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/-/ready', port: 'metrics' });
    expect(c.ports).toContainEqual(expect.objectContaining({ name: 'metrics', containerPort: 9877 }));
    expect(argValue('--web.listen-address')).toBe(':9877');
  });

  it('pin the image and set resource requests and a memory limit', () => {
    expect(container().image).toMatch(/:[0-9][^:]*$/);
    expect(container().image).not.toMatch(/:latest$/);
    expect(container().resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(container().resources?.limits?.memory).toBeDefined();
  });

  it('read the config from the ConfigMap at the path --config.file names', () => {
    const configFile = argValue('--config.file');
    expect(configFile).toBe('/etc/flashback-exporter/config.yaml');
    const mount = container().volumeMounts.find((m) => configFile!.startsWith(`${m.mountPath}/`));
    expect(mount, 'a mount holding the config file').toBeDefined();
    expect(mount!.readOnly).toBe(true);
    // subPath mounts never see ConfigMap updates, which would make /-/reload useless
    expect(mount!.subPath).toBeUndefined();
    const cm = one('ConfigMap') as Manifest & { data: Record<string, string> };
    expect(volumeOf(mount!).configMap?.name).toBe(cm.metadata.name);
    expect(Object.keys(cm.data)).toContain(configFile!.slice(mount!.mountPath.length + 1));
  });

  it('read the token from the Secret as a file that api.tokenFile points at, never from the environment or the config', () => {
    const cm = one('ConfigMap') as Manifest & { data: Record<string, string> };
    const config = parse(cm.data['config.yaml']!) as { api: { tokenFile?: string; token?: string } };
    const tokenFile = config.api.tokenFile!;
    expect(tokenFile).toMatch(/^\//);
    const mount = container().volumeMounts.find((m) => tokenFile.startsWith(`${m.mountPath}/`));
    expect(mount, `a mount holding ${tokenFile}`).toBeDefined();
    expect(mount!.readOnly).toBe(true);
    const secretVolume = volumeOf(mount!).secret;
    const secret = one('Secret') as Manifest & { stringData: Record<string, string> };
    expect(secretVolume?.secretName).toBe(secret.metadata.name);
    const item = secretVolume?.items?.find((i) => `${mount!.mountPath}/${i.path}` === tokenFile);
    expect(item, `a Secret item mounted at ${tokenFile}`).toBeDefined();
    expect(Object.keys(secret.stringData)).toContain(item!.key);
    // readable by the pod's group (fsGroup), by nobody else
    expect(secretVolume!.defaultMode! & 0o007).toBe(0);
    expect(container().env ?? []).toEqual([]);
    expect(JSON.stringify(container().args)).not.toMatch(/token/i);
  });

  it('ship the Secret only as an example that kubectl apply -k leaves out', () => {
    const kustomization = one('Kustomization') as Manifest & { resources: string[] };
    expect(one('Secret').file).toBe('secret.example.yaml');
    expect(kustomization.resources).not.toContain('secret.example.yaml');
    const listed = new Set(kustomization.resources);
    for (const f of files.filter((x) => x !== 'kustomization.yaml' && x !== 'secret.example.yaml')) expect(listed, f).toContain(f);
    for (const f of listed) expect(files, `kustomization lists ${f}`).toContain(f);
  });

  it('line up labels and ports: Deployment -> pod -> Service -> ServiceMonitor', () => {
    const d = deployment().spec;
    for (const [k, v] of Object.entries(d.selector.matchLabels)) expect(d.template.metadata.labels[k]).toBe(v);
    const svc = one('Service') as Manifest & { spec: { selector: Record<string, string>; ports: { name: string; targetPort: string | number }[] } };
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(d.template.metadata.labels[k], `Service selects ${k}`).toBe(v);
    const portNames = container().ports.map((p) => p.name);
    for (const p of svc.spec.ports) expect(portNames).toContain(p.targetPort);
    const sm = one('ServiceMonitor') as Manifest & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path?: string }[] } };
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata.labels?.[k], `ServiceMonitor selects ${k}`).toBe(v);
    for (const e of sm.spec.endpoints) {
      expect(svc.spec.ports.map((p) => p.name)).toContain(e.port);
      expect(e.path ?? '/metrics').toBe('/metrics');
    }
    // the ServiceMonitor's job label is the Service's name, and the exporter-down alert reads it
    expect(svc.metadata.name).toBe('flashback-exporter');
    expect(JSON.stringify(loadRuleGroups())).toContain('up{job=\\"flashback-exporter\\"}');
  });

  it('hold in the PrometheusRule exactly the rule groups of prometheus/flashback-exporter.rules.yml', () => {
    const pr = one('PrometheusRule') as Manifest & { spec: { groups: unknown } };
    expect(pr.spec.groups).toEqual(loadRuleGroups());
  });

  it('keep the PrometheusRule what the generator makes, and the generator notices drift', async () => {
    const clean = await run(process.execPath, ['scripts/gen-prometheusrule.ts', '--check']);
    expect(clean.code, clean.stderr).toBe(0);

    const dir = mkdtempSync(join(tmpdir(), 'flashback-promrule-'));
    temps.push(dir);
    const changed = join(dir, 'rules.yml');
    writeFileSync(changed, readFileSync(RULES_FILE, 'utf8').replace('for: 5m', 'for: 6m'));
    const drift = await run(process.execPath, ['scripts/gen-prometheusrule.ts', '--check', '--rules', changed]);
    expect(drift.code).toBe(1);
    expect(drift.stderr).toMatch(/out of date/);
  });
});
