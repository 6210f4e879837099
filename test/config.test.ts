import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { formatProblem, loadConfigFile, parseConfig } from '../src/config/load.js';
import { expandUnits, shardOf } from '../src/config/units.js';
import { configJsonSchema } from '../src/config/json-schema.js';
import { formatDuration, parseDuration, parseSize } from '../src/config/duration.js';
import { fixture } from './support/fixtures.js';

const invalidDir = new URL('./fixtures/config/invalid/', import.meta.url);
const invalidFixtures = readdirSync(invalidDir).filter((f) => f.endsWith('.yaml'));

function load(text: string, file = 'config.yaml') {
  const result = parseConfig(text, file);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.config;
}

describe('config validation', () => {
  it.each(invalidFixtures)('reports every problem in %s with its file, line, column and path', (file) => {
    const result = parseConfig(fixture(`config/invalid/${file}`), file);
    const expected = fixture(`config/invalid/${file.replace(/\.yaml$/, '.errors')}`).trimEnd().split('\n');
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual(expected);
  });

  it('has an expected-errors file for every invalid fixture', () => {
    expect(invalidFixtures.length).toBeGreaterThanOrEqual(15);
    for (const file of invalidFixtures) expect(() => fixture(`config/invalid/${file.replace(/\.yaml$/, '.errors')}`)).not.toThrow();
  });

  it('words the issue example exactly: file:line:col path: message', () => {
    const result = parseConfig(fixture('config/invalid/bad-scope.yaml'), 'config.yaml');
    expect(result.ok ? '' : formatProblem(result.problems[0]!)).toBe('config.yaml:5:5 targets[1].scope: must be one of org, workspace, repo');
  });

  it('suggests the near-miss for a misspelt key', () => {
    const result = parseConfig('tagets: []\n', 'c.yaml');
    expect(result.ok ? [] : result.problems.map(formatProblem)).toContain('c.yaml:1:1 tagets: unknown key (did you mean "targets"?)');
  });

  it('reports an unreadable file by its path instead of throwing', async () => {
    const result = await loadConfigFile('/nonexistent/flashback.yaml');
    expect(result.ok ? '' : formatProblem(result.problems[0]!)).toBe('/nonexistent/flashback.yaml cannot read config file: no such file');
  });
});

describe('config defaults and resolution', () => {
  it('fills every default into a minimal config', () => {
    const config = load(fixture('config/valid/minimal.yaml'));
    expect(config.api).toEqual({
      baseUrl: 'https://backend.flashback.tech',
      tokenFile: undefined,
      timeoutMs: 15_000,
      concurrency: 4,
      retries: 2,
      maxRequestsPerSecond: undefined,
      maxResponseBytes: 8 * 1024 * 1024,
    });
    expect(config.targets[0]).toMatchObject({
      name: 'acme',
      scope: 'org',
      id: undefined,
      schedule: '0 * * * * *',
      window: '24h',
      timeBucketSize: '1h',
      timeBucketSizeMs: 3_600_000,
      bucket: 'latest',
      summary: true,
      staleAfterMs: 600_000,
      labels: {},
    });
    expect(config.limits.maxSeries).toBe(100_000);
  });

  it('accepts config.example.yaml and lets targets override defaults', () => {
    const config = load(readFileSync(new URL('../config.example.yaml', import.meta.url), 'utf8'));
    const [acme, eng, checkout] = config.targets;
    expect(acme).toMatchObject({ window: '24h', timeBucketSize: '1h', summary: true });
    expect(eng).toMatchObject({ window: '7d', timeBucketSize: '1d', labels: { team: 'platform' } });
    expect(eng!.filters).toEqual({ model: ['gpt-4o', 'claude-sonnet-4'], userId: ['u-7'], apiKeyId: [], aiLlmId: [] });
    expect(checkout).toMatchObject({ schedule: '0 */5 * * * *', bucket: 'complete', summary: false });
  });

  it('resolves YAML merge keys, so targets can share settings through an anchor as in Prometheus configs', () => {
    const config = load(fixture('config/valid/merge-keys.yaml'));
    expect(config.targets.map((t) => [t.name, t.scope, t.id, t.schedule, t.labels])).toEqual([
      ['web', 'workspace', 'ws-web', '0 */5 * * * *', { team: 'platform' }],
      ['api', 'workspace', 'ws-api', '0 */5 * * * *', { team: 'platform' }],
      ['batch', 'workspace', 'ws-batch', '0 0 * * * *', { team: 'platform' }],
    ]);
  });

  it('freezes the loaded config so nothing can drift from what was validated', () => {
    const config = load(fixture('config/valid/minimal.yaml'));
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.targets[0]!.filters.model)).toBe(true);
    expect(() => {
      (config.api as { concurrency: number }).concurrency = 99;
    }).toThrow(TypeError);
  });

  it('makes an unset staleAfter 10m, or twice the longest interval between runs of a slower schedule', () => {
    const config = load(`
targets:
  - { name: minutely, scope: org }
  - { name: hourly, scope: org, schedule: "0 * * * *" }
  - { name: weekly, scope: org, schedule: "0 0 * * 1" }
  - { name: monthly, scope: org, schedule: "0 0 1 * *" }
`);
    expect(config.targets.map((t) => t.staleAfterMs)).toEqual([600_000, 2 * 3_600_000, 14 * 86_400_000, 62 * 86_400_000]);
  });

  it('accepts a staleAfter as long as the longest interval between runs of its schedule', () => {
    const config = load(`
defaults:
  staleAfter: 1h
targets:
  - { name: hourly, scope: org, schedule: "0 * * * *" }
  - { name: weekly, scope: org, schedule: "0 0 * * 1", staleAfter: 7d }
`);
    expect(config.targets.map((t) => t.staleAfterMs)).toEqual([3_600_000, 7 * 86_400_000]);
  });

  it('accepts an api.timeout of 10m, the longest a request may wait', () => {
    expect(load('api:\n  timeout: 10m\ntargets:\n  - { name: a, scope: org }\n').api.timeoutMs).toBe(600_000);
  });

  it('writes an interval as a duration that parseDuration reads back, in days at the most', () => {
    expect(formatDuration(31 * 86_400_000)).toBe('31d');
    expect(formatDuration(2 * 86_400_000 + 15 * 3_600_000 + 30_000)).toBe('2d15h30s');
    expect(parseDuration(formatDuration(90_061_001))).toBe(90_061_001);
  });

  it('parses Prometheus durations and byte sizes', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('1d1h')).toBe(90_000_000);
    expect(parseDuration('1h1d')).toBeUndefined();
    expect(parseDuration('15 seconds')).toBeUndefined();
    expect(parseSize('8MiB')).toBe(8_388_608);
    expect(parseSize('512KiB')).toBe(524_288);
    expect(parseSize(1000)).toBe(1000);
    expect(parseSize('8 megabytes')).toBeUndefined();
  });
});

describe('poll units', () => {
  const yaml = `
targets:
  - name: acme
    scope: org
  - name: eng
    scope: workspace
    id: ws-42
    filters:
      model: [gpt-4o, claude-sonnet-4]
      userId: [u-1, u-2, u-3]
      aiLlmId: llm-9
    labels: { team: platform, zone: eu }
`;

  it('expands filter lists into their product, one unit per combination', () => {
    const units = expandUnits(load(yaml));
    expect(units.map((u) => u.id)).toEqual([
      'acme',
      'eng{model="gpt-4o",user_id="u-1",ai_llm_id="llm-9"}',
      'eng{model="gpt-4o",user_id="u-2",ai_llm_id="llm-9"}',
      'eng{model="gpt-4o",user_id="u-3",ai_llm_id="llm-9"}',
      'eng{model="claude-sonnet-4",user_id="u-1",ai_llm_id="llm-9"}',
      'eng{model="claude-sonnet-4",user_id="u-2",ai_llm_id="llm-9"}',
      'eng{model="claude-sonnet-4",user_id="u-3",ai_llm_id="llm-9"}',
    ]);
  });

  it('labels data series with target, scope, window, filters and the target labels, in that order', () => {
    const eng = expandUnits(load(yaml))[1]!;
    expect(eng.dataLabels).toEqual([
      ['target', 'eng'], ['scope', 'workspace'], ['scope_id', 'ws-42'], ['window', '24h'], ['bucket_size', '1h'],
      ['model', 'gpt-4o'], ['user_id', 'u-1'], ['api_key_id', ''], ['ai_llm_id', 'llm-9'], ['team', 'platform'], ['zone', 'eu'],
    ]);
    expect(eng.unitLabels).toEqual([['target', 'eng'], ['model', 'gpt-4o'], ['user_id', 'u-1'], ['api_key_id', ''], ['ai_llm_id', 'llm-9']]);
  });

  it('keeps a unit key across reloads when its definition is unchanged, and changes it otherwise', () => {
    const before = expandUnits(load(yaml));
    const same = expandUnits(load(yaml));
    const changed = expandUnits(load(yaml.replace('id: ws-42', 'id: ws-42\n    window: 7d')));
    expect(same.map((u) => u.key)).toEqual(before.map((u) => u.key));
    expect(changed[0]!.key).toBe(before[0]!.key);
    expect(changed[1]!.key).not.toBe(before[1]!.key);
  });

  it('partitions units across shards with no gap and no overlap', () => {
    const config = load(yaml);
    const all = expandUnits(config).map((u) => u.key);
    for (const total of [1, 2, 3, 5]) {
      const shards = Array.from({ length: total }, (_, shard) => expandUnits(config, { shard, totalShards: total }).map((u) => u.key));
      expect(shards.flat().sort()).toEqual([...all].sort());
    }
    expect(shardOf('eng{model="gpt-4o"}', 4)).toBe(shardOf('eng{model="gpt-4o"}', 4));
  });
});

describe('config loader robustness', () => {
  const outcome = (text: string) => {
    const result = parseConfig(text, 'fuzz.yaml');
    return result.ok ? result.config.targets.length > 0 : result.problems.every((p) => typeof p.message === 'string' && p.message !== '');
  };

  it('returns a config or a list of problems for arbitrary text, never throwing', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (text) => outcome(text)), { numRuns: 500 });
  });

  it('returns a config or a list of problems for arbitrary YAML documents', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => outcome(stringify(value))), { numRuns: 500 });
  });

  it('returns a config or a list of problems when any key of a valid config gets an arbitrary value', () => {
    const base = {
      api: { baseUrl: 'https://x.test', timeout: '5s', concurrency: 2 },
      defaults: { schedule: '0 * * * * *', window: '24h', bucket: 'latest' },
      targets: [{ name: 'a', scope: 'workspace', id: 'w', filters: { model: ['m'] }, labels: { team: 't' } }],
    };
    expect(parseConfig(stringify(base)).ok).toBe(true);
    const paths = [
      ['api'], ['api', 'baseUrl'], ['api', 'timeout'], ['api', 'concurrency'], ['defaults', 'schedule'], ['defaults', 'window'],
      ['targets'], ['targets', 0], ['targets', 0, 'scope'], ['targets', 0, 'filters'], ['targets', 0, 'filters', 'model'], ['targets', 0, 'labels'],
    ] as const;
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.jsonValue({ maxDepth: 3 }), (path, value) => {
        const doc = structuredClone(base) as Record<string, unknown>;
        let node = doc as Record<string | number, unknown>;
        for (const step of path.slice(0, -1)) node = node[step] as Record<string | number, unknown>;
        node[path[path.length - 1]!] = value;
        return outcome(stringify(doc));
      }),
      { numRuns: 500 },
    );
  });
});

describe('JSON Schema', () => {
  it('matches the committed config.schema.json (regenerate with npm run schema)', () => {
    const committed = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8')) as unknown;
    expect(committed).toEqual(configJsonSchema());
  });

  it('describes every top-level key and forbids unknown ones', () => {
    const schema = configJsonSchema() as { properties: Record<string, unknown>; additionalProperties: boolean; required: string[] };
    expect(Object.keys(schema.properties)).toEqual(['api', 'defaults', 'targets', 'limits']);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['targets']);
  });
});
