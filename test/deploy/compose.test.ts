// deploy/compose.yaml, the Prometheus configurations and Grafana's provisioning files: no Docker
// engine here, so the compose file is checked for what would break `docker compose up` (missing
// mount sources, names and ports that do not line up) and Prometheus's configuration goes
// through the real promtool exactly as the container would see it, mounts applied.
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROMTOOL_HINT, repoPath, requireTool, run } from '../support/tools.js';

const COMPOSE = repoPath('deploy/compose.yaml');
const composeDir = dirname(COMPOSE);

interface Service {
  build?: { context: string; dockerfile?: string };
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  read_only?: boolean;
  cap_drop?: string[];
  security_opt?: string[];
  healthcheck?: { test: string[] };
  depends_on?: string[] | Record<string, { condition: string }>;
}
const compose = parse(readFileSync(COMPOSE, 'utf8')) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
const services = compose.services;

interface Mount {
  source: string;
  target: string;
  bind: boolean;
  readOnly: boolean;
}
function mounts(service: Service): Mount[] {
  return (service.volumes ?? []).map((v) => {
    const [source, target, mode] = v.split(':') as [string, string, string | undefined];
    const bind = source.startsWith('.') || source.startsWith('/');
    return { source: bind ? resolve(composeDir, source) : source, target, bind, readOnly: mode === 'ro' };
  });
}
const loadYaml = <T>(path: string): T => parse(readFileSync(path, 'utf8')) as T;

let promtool = '';
const temps: string[] = [];
beforeAll(() => {
  promtool = requireTool('promtool', PROMTOOL_HINT);
});
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

describe('deploy/compose.yaml', () => {
  it('runs the exporter in demo mode, Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(['flashback-exporter', 'grafana', 'prometheus']);
    expect(services['flashback-exporter']!.command).toEqual(['--demo']);
  });

  it('builds the exporter from the repository Dockerfile', () => {
    const build = services['flashback-exporter']!.build!;
    expect(existsSync(join(resolve(composeDir, build.context), build.dockerfile ?? 'Dockerfile'))).toBe(true);
  });

  it('runs the exporter read-only, without capabilities or privilege escalation', () => {
    const exporter = services['flashback-exporter']!;
    expect(exporter.read_only).toBe(true);
    expect(exporter.cap_drop).toEqual(['ALL']);
    expect(exporter.security_opt).toContain('no-new-privileges:true');
  });

  it('health-checks the exporter with the node binary the runtime image has, on /-/ready', () => {
    const test = services['flashback-exporter']!.healthcheck!.test;
    const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(repoPath('Dockerfile'), 'utf8'))?.[1];
    const node = (JSON.parse(entrypoint!) as string[])[0];
    expect(test.slice(0, 2)).toEqual(['CMD', node]);
    expect(test.join(' ')).toContain('http://127.0.0.1:9877/-/ready');
  });

  it('pins every image to a version', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build) continue;
      expect(s.image, name).toMatch(/:v?\d+\.\d+\.\d+$/);
    }
  });

  it('publishes ports on loopback only', () => {
    for (const [name, s] of Object.entries(services)) for (const p of s.ports ?? []) expect(p, name).toMatch(/^127\.0\.0\.1:/);
  });

  it('mounts files that exist, read-only, and named volumes that are declared', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const m of mounts(s)) {
        if (m.bind) {
          expect(existsSync(m.source), `${name}: ${m.source}`).toBe(true);
          expect(m.readOnly, `${name}: ${m.target} read-only`).toBe(true);
        } else {
          expect(Object.keys(compose.volumes ?? {}), `${name}: volume ${m.source}`).toContain(m.source);
        }
      }
    }
  });

  it('gives Prometheus a configuration that passes promtool check config, with the rules where compose mounts them', async () => {
    const prom = services.prometheus!;
    const configFlag = prom.command!.find((c) => c.startsWith('--config.file='))!.slice('--config.file='.length);
    // lay the bind mounts out under a fake root, so relative rule_files resolve as in the container
    const root = mkdtempSync(join(tmpdir(), 'flashback-compose-'));
    temps.push(root);
    for (const m of mounts(prom).filter((x) => x.bind)) {
      const dest = join(root, m.target);
      mkdirSync(dirname(dest), { recursive: true });
      if (statSync(m.source).isDirectory()) cpSync(m.source, dest, { recursive: true });
      else copyFileSync(m.source, dest);
    }
    const result = await run(promtool, ['check', 'config', join(root, configFlag)]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout + result.stderr).toMatch(/SUCCESS: 1 rule files found/);
  });

  it('points Prometheus at the exporter service and its exposed port, under the job name the alerts expect', () => {
    const config = loadYaml<{ scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] }>(repoPath('prometheus/prometheus.compose.yml'));
    const job = config.scrape_configs.find((c) => c.job_name === 'flashback-exporter');
    expect(job?.static_configs.flatMap((s) => s.targets)).toEqual(['flashback-exporter:9877']);
    expect(readFileSync(repoPath('Dockerfile'), 'utf8')).toMatch(/^EXPOSE 9877$/m);
  });

  it('provisions Grafana with the Prometheus service as default data source, at its scrape interval', () => {
    const grafana = services.grafana!;
    const provisioning = mounts(grafana).find((m) => m.target === '/etc/grafana/provisioning')!;
    expect(provisioning.source).toBe(repoPath('grafana/provisioning'));
    const ds = loadYaml<{ datasources: { type: string; url: string; isDefault: boolean; jsonData?: { timeInterval?: string } }[] }>(
      join(provisioning.source, 'datasources/prometheus.yaml'),
    ).datasources;
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090', isDefault: true });
    expect(services.prometheus!.ports).toContain('127.0.0.1:9090:9090');
    const scrape = loadYaml<{ global: { scrape_interval: string } }>(repoPath('prometheus/prometheus.compose.yml')).global.scrape_interval;
    expect(ds[0]!.jsonData?.timeInterval).toBe(scrape);
  });

  it('provisions the dashboard from the directory compose mounts it into, and opens on it', () => {
    const grafana = services.grafana!;
    const provisioning = mounts(grafana).find((m) => m.target === '/etc/grafana/provisioning')!;
    const providers = loadYaml<{ providers: { type: string; options: { path: string } }[] }>(
      join(provisioning.source, 'dashboards/flashback-exporter.yaml'),
    ).providers;
    const dashboardMount = mounts(grafana).find((m) => m.source === repoPath('grafana/flashback-private-chat.json'));
    expect(dashboardMount, 'the dashboard is mounted').toBeDefined();
    expect(providers.map((p) => p.type)).toEqual(['file']);
    expect(dirname(dashboardMount!.target)).toBe(providers[0]!.options.path);
    expect(grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(dashboardMount!.target);
  });
});

describe('prometheus/prometheus.yml, the example configuration', () => {
  it('passes promtool check config with the rules next to it', async () => {
    const result = await run(promtool, ['check', 'config', repoPath('prometheus/prometheus.yml')]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout + result.stderr).toMatch(/SUCCESS: 1 rule files found/);
  });

  it('scrapes the exporter under the job name the alerts expect', () => {
    const config = loadYaml<{ scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] }>(repoPath('prometheus/prometheus.yml'));
    expect(config.scrape_configs.map((c) => c.job_name)).toContain('flashback-exporter');
    expect(config.scrape_configs[0]!.static_configs[0]!.targets).toEqual(['localhost:9877']);
  });
});
