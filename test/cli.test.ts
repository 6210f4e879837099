import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeFlashback } from './support/fake-flashback.js';
import { fixture, jsonFixture } from './support/fixtures.js';
import { runExporter, spawnExporter, type ExporterProcess } from './support/process.js';
import { eventually } from './support/exporter.js';

let dir: string;
let fake: FakeFlashback;
let proc: ExporterProcess | undefined;
const TOKEN = 'cli-secret-token-42';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flashback-cli-'));
  fake = await FakeFlashback.start((req) =>
    req.headers.authorization !== `Bearer ${TOKEN}`
      ? { status: 401, body: { success: false, message: 'Unauthorized' } }
      : req.query.id === 'hang'
        ? { hang: true }
        : req.query.id === 'broken'
          ? { status: 500, body: { success: false, message: 'down' } }
          : { body: jsonFixture('api/ok.json') },
  );
});

afterEach(() => {
  if (proc?.child.exitCode === null) proc.child.kill('SIGKILL');
  proc = undefined;
});

afterAll(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

function configFile(name: string, targets: string, api = ''): string {
  const path = join(dir, name);
  writeFileSync(path, `api:\n  baseUrl: ${fake.url}\n  retries: 0\n${api}defaults:\n  schedule: "0 0 0 1 1 *"\ntargets:\n${targets}`);
  return path;
}

describe('command line', () => {
  it('prints the usage with --help and exits 0', async () => {
    const { code, stdout } = await runExporter(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^usage: flashback-exporter \[<flags>\]/);
    for (const flag of ['--config.file="config.yaml"', '--config.check', '--web.listen-address=":9877"', '--web.telemetry-path="/metrics"', '--log.level="info"', '--log.format="json"', '--once', '--demo', '--version']) {
      expect(stdout).toContain(flag);
    }
  });

  it('prints the version with --version', async () => {
    const { code, stdout } = await runExporter(['--version']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^flashback-exporter, version \d+\.\d+\.\d+ \(node: v\d+/);
  });

  it.each([
    [['--bogus'], /^flashback-exporter: error: Unknown option '--bogus'/],
    [['--log.level=loud'], /^flashback-exporter: error: invalid value "loud" for flag --log.level: must be one of debug, info, warn, error/],
    [['--log.format', 'xml'], /^flashback-exporter: error: invalid value "xml" for flag --log.format/],
    [['--shard=2', '--total-shards=2'], /^flashback-exporter: error: --shard=2 must be less than --total-shards=2/],
    [['--web.listen-address=nonsense', '--demo'], /^flashback-exporter: error: invalid value "nonsense" for flag --web.listen-address/],
    [['stray'], /^flashback-exporter: error: Unexpected argument 'stray'/],
  ])('rejects %j with a one-line error and the usage', async (args, message) => {
    const { code, stderr } = await runExporter(args);
    expect(code).toBe(1);
    expect(stderr).toMatch(message);
    expect(stderr.split('\n')[1]).toBe('');
    expect(stderr).toContain('usage: flashback-exporter');
  });

  it('refuses an invalid config within 2 s, listing every problem with its line and no stack trace', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, fixture('config/invalid/unknown-keys.yaml'));
    const { code, stderr, ms } = await runExporter([`--config.file=${path}`]);
    expect(code).toBe(1);
    expect(ms).toBeLessThan(2_000);
    expect(stderr).toContain(`${path}:6:1 tagets: unknown key (did you mean "targets"?)`);
    expect(stderr.match(/unknown key/g)).toHaveLength(7);
    expect(stderr).not.toMatch(/^\s+at /m);
  });

  it('names a missing config file', async () => {
    const { code, stderr } = await runExporter(['--config.file=/nonexistent/config.yaml']);
    expect(code).toBe(1);
    expect(stderr).toContain('/nonexistent/config.yaml cannot read config file: no such file');
  });

  it('explains a missing token instead of starting blind', async () => {
    const { code, stderr } = await runExporter([`--config.file=${configFile('no-token.yaml', '  - { name: a, scope: org }\n')}`, '--web.listen-address=127.0.0.1:0']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/no API token: set api.tokenFile in the configuration or the FLASHBACK_TOKEN environment variable/);
  });

  it('refuses a token that cannot go in a header, naming where it came from, instead of failing every poll', async () => {
    const tokenFile = join(dir, 'two-line-token');
    writeFileSync(tokenFile, 'sec\nret-token\n');
    const fromFile = await runExporter(['--once', `--config.file=${configFile('bad-token-file.yaml', '  - { name: a, scope: org }\n', `  tokenFile: ${tokenFile}\n`)}`]);
    expect(fromFile.code).toBe(1);
    expect(fromFile.stderr).toContain(`cannot use api.tokenFile: token file ${tokenFile} holds a line break at position 4: a token is one word of printable ASCII`);
    const fromEnv = await runExporter(['--once', `--config.file=${configFile('bad-token-env.yaml', '  - { name: a, scope: org }\n')}`], { FLASHBACK_TOKEN: 'Bearer s3cr3t-xyz' });
    expect(fromEnv.code).toBe(1);
    expect(fromEnv.stderr).toContain('FLASHBACK_TOKEN holds a space at position 7');
    expect(fromEnv.stderr).not.toContain('s3cr3t-xyz');
  });

  it('says that FLASHBACK_TOKEN was not used when api.tokenFile is set but cannot be read', async () => {
    const path = configFile('missing-token-file.yaml', '  - { name: a, scope: org }\n', '  tokenFile: /nonexistent/token\n');
    const { code, stderr } = await runExporter(['--once', `--config.file=${path}`], { FLASHBACK_TOKEN: TOKEN });
    expect(code).toBe(1);
    expect(stderr).toMatch(/cannot use api.tokenFile: .*no such file.*\(FLASHBACK_TOKEN is set, but api.tokenFile takes precedence over it\)/);
  });
});

describe('--config.check', () => {
  it('validates without a token and prints units, series and API calls per hour', async () => {
    const path = configFile('check.yaml', '  - { name: a, scope: org, schedule: "0 * * * * *" }\n  - name: b\n    scope: workspace\n    id: w\n    schedule: "0 */5 * * * *"\n    filters: { model: [m1, m2], userId: [u1, u2, u3] }\n');
    const { code, stdout } = await runExporter(['--config.check', `--config.file=${path}`]);
    expect(code).toBe(0);
    expect(stdout).toContain(`${path}: configuration is valid`);
    expect(stdout).toMatch(/^a\s+org\s+1\s+15\s+60\s+0 \* \* \* \* \*$/m);
    expect(stdout).toMatch(/^b\s+workspace\s+6\s+90\s+72\s+0 \*\/5 \* \* \* \*$/m);
    expect(stdout).toContain('total: 2 targets, 7 poll units, about 105 series, 132 API calls per hour');
    expect(stdout).toContain('  b{model="m2",user_id="u3"}');
  });

  it('counts a schedule of every second as exactly 3600 calls per hour, without taking seconds to do so', async () => {
    const path = configFile('fast.yaml', '  - { name: fast, scope: org, schedule: "*/1 * * * * *" }\n');
    const { code, stdout, ms } = await runExporter(['--config.check', `--config.file=${path}`]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^fast\s+org\s+1\s+15\s+3600\s+\*\/1 \* \* \* \* \*$/m);
    expect(ms).toBeLessThan(5_000);
  });

  it('shows the calls per hour of weekly and monthly schedules as small numbers, not 0', async () => {
    const path = configFile('slow.yaml', '  - { name: weekly, scope: org, schedule: "0 0 * * 1" }\n  - { name: monthly, scope: org, schedule: "0 0 1 * *" }\n  - { name: minutely, scope: org, schedule: "0 * * * * *" }\n');
    const { code, stdout } = await runExporter(['--config.check', `--config.file=${path}`]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^weekly\s+org\s+1\s+15\s+0\.006\s+0 0 \* \* 1$/m);
    expect(stdout).toMatch(/^monthly\s+org\s+1\s+15\s+0\.0014\s+0 0 1 \* \*$/m);
    expect(stdout).toContain('total: 3 targets, 3 poll units, about 45 series, 60 API calls per hour');
  });

  it('prints the share of each shard when sharded', async () => {
    const path = configFile('shards.yaml', '  - name: b\n    scope: workspace\n    id: w\n    filters: { model: [m1, m2, m3, m4, m5, m6] }\n');
    const { stdout } = await runExporter(['--config.check', `--config.file=${path}`, '--shard=1', '--total-shards=3']);
    const rows = stdout.split('\n').filter((l) => /^\d( \(this one\))?\s+\d+/.test(l));
    expect(rows).toHaveLength(3);
    expect(rows[1]).toMatch(/^1 \(this one\)/);
    expect(rows.reduce((n, r) => n + Number(r.split(/\s{2,}/)[1]), 0)).toBe(6);
  });
});

describe('--once', () => {
  it('polls every unit once, prints only the exposition on stdout and exits 0', async () => {
    const path = configFile('once.yaml', '  - { name: a, scope: org }\n  - { name: b, scope: repo, id: r }\n');
    const { code, stdout, stderr } = await runExporter(['--once', `--config.file=${path}`], { FLASHBACK_TOKEN: TOKEN });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^# HELP flashback_private_chat_input_tokens /);
    expect(stdout).toMatch(/^flashback_private_chat_input_tokens\{target="b",.*\} 900$/m);
    expect(stdout).not.toMatch(/^(process|nodejs)_/m);
    expect(stdout.split('\n').every((l) => l === '' || l.startsWith('#') || l.startsWith('flashback_'))).toBe(true);
    expect(stderr).not.toContain(TOKEN);
  });

  it('exits 1 when any poll failed, still printing what it has', async () => {
    const path = configFile('once-fail.yaml', '  - { name: a, scope: org }\n  - { name: b, scope: repo, id: broken }\n');
    const { code, stdout, stderr } = await runExporter(['--once', `--config.file=${path}`], { FLASHBACK_TOKEN: TOKEN });
    expect(code).toBe(1);
    expect(stdout).toMatch(/^flashback_exporter_poll_errors_total\{target="b",.*reason="http_5xx"\} 1$/m);
    expect(stderr).toMatch(/"msg":"poll failed"/);
  });

  it('reads the token from api.tokenFile', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const path = configFile('token-file.yaml', '  - { name: a, scope: org }\n', `  tokenFile: ${tokenFile}\n`);
    const { code } = await runExporter(['--once', `--config.file=${path}`]);
    expect(code).toBe(0);
  });
});

describe('the daemon', () => {
  it('exits 0 within 5 s of SIGTERM, even with a request hanging', async () => {
    const path = configFile('hang.yaml', '  - { name: a, scope: repo, id: hang }\n', '  timeout: 60s\n');
    proc = spawnExporter([`--config.file=${path}`, '--web.listen-address=127.0.0.1:0'], { FLASHBACK_TOKEN: TOKEN });
    await proc.url();
    await eventually(() => fake.requests.some((r) => r.query.id === 'hang'), 5_000, 'the hanging request');
    const started = performance.now();
    proc.child.kill('SIGTERM');
    const { code } = await proc.exited;
    expect(code).toBe(0);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(proc.logs().some((l) => l.msg === 'shutting down')).toBe(true);
  });

  it('exits 0 on SIGINT too', async () => {
    proc = spawnExporter(['--demo', '--web.listen-address=127.0.0.1:0']);
    await proc.url();
    proc.child.kill('SIGINT');
    expect((await proc.exited).code).toBe(0);
  });

  it('reloads its config file on SIGHUP', async () => {
    const path = configFile('hup.yaml', '  - { name: a, scope: org }\n');
    proc = spawnExporter([`--config.file=${path}`, '--web.listen-address=127.0.0.1:0'], { FLASHBACK_TOKEN: TOKEN });
    const url = await proc.url();
    configFile('hup.yaml', '  - { name: a, scope: org }\n  - { name: added, scope: repo, id: added }\n');
    proc.child.kill('SIGHUP');
    await proc.waitForLog('configuration reloaded');
    await eventually(async () => (await (await fetch(`${url}/metrics`)).text()).includes('target="added"'), 5_000, 'the added target');
  });

  it('says so and exits 1 when the listen address is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const port = (blocker.address() as { port: number }).port;
      const { code, stderr } = await runExporter(['--demo', `--web.listen-address=127.0.0.1:${port}`]);
      expect(code).toBe(1);
      expect(stderr).toMatch(/"msg":"cannot listen"/);
      expect(stderr).toMatch(/EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });

  it.runIf(existsSync('/proc/self/task'))("runs V8's helper threads 10 nicer than its event loop, and every other thread as started", async () => {
    proc = spawnExporter(['--demo', '--web.listen-address=127.0.0.1:0', '--log.level=debug']);
    await proc.url();
    const task = `/proc/${proc.child.pid}/task`;
    const threads = readdirSync(task).map((tid) => ({ name: readFileSync(join(task, tid, 'comm'), 'utf8').trim(), nice: getPriority(Number(tid)) }));
    const helpers = threads.filter((t) => t.name === 'V8Worker');
    expect(helpers.map((t) => t.nice)).toEqual(helpers.map(() => Math.min(19, getPriority() + 10)));
    expect(threads.filter((t) => t.name !== 'V8Worker').map((t) => t.nice)).toEqual(threads.filter((t) => t.name !== 'V8Worker').map(() => getPriority()));
    // Node names them since 24; before, they cannot be told apart, and nothing changes.
    if (Number(process.versions.node.split('.')[0]) >= 24) {
      expect(helpers.length).toBeGreaterThan(0);
      expect(proc.logs().find((l) => String(l.msg).startsWith("lowered the priority of V8's helper threads"))).toMatchObject({ threads: helpers.length });
    }
  });

  it('logs JSON lines on stderr, or readable lines with --log.format=pretty', async () => {
    proc = spawnExporter(['--demo', '--web.listen-address=127.0.0.1:0', '--log.format=pretty']);
    await eventually(() => proc!.stderr.includes('listening'), 10_000, 'the listening line');
    expect(proc.stderr).toMatch(/INFO.*listening/);
    expect(proc.stdout).toBe('');
  });
});

describe('--demo', () => {
  it('serves data from the built-in simulator within 5 s of starting', async () => {
    const started = performance.now();
    proc = spawnExporter(['--demo', '--web.listen-address=127.0.0.1:0']);
    const url = await proc.url();
    await eventually(async () => /^flashback_private_chat_input_tokens\{target="platform",.*model="claude-sonnet-4",user_id="u-bob".*\} \d+$/m.test(await (await fetch(`${url}/metrics`)).text()), 5_000, 'demo data');
    expect(performance.now() - started).toBeLessThan(5_000);
    const body = await (await fetch(`${url}/metrics`)).text();
    for (const target of ['acme', 'platform', 'checkout']) expect(body).toMatch(new RegExp(`^flashback_exporter_target_up\\{target="${target}",.*\\} 1$`, 'm'));
    expect(body).toMatch(/^flashback_private_chat_window_stat\{.*stat="p90"\} \d+/m);
    expect((await fetch(`${url}/-/ready`)).status).toBe(200);
  });
});

describe('the README', () => {
  it('shows the --config.check output that config.example.yaml really gives', async () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const sample = /\$ flashback-exporter --config.check --config.file=config.example.yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    const { stdout } = await runExporter(['--config.check', '--config.file=config.example.yaml']);
    expect(sample).toBeDefined();
    expect(stdout.trimEnd()).toBe(sample!.trimEnd());
  });
});
