import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('..', import.meta.url));
let dir: string;
let bin: string;

// As a user gets it: `npm pack`, installed into an empty folder, run from there.
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flashback-pack-'));
  execFileSync('npm', ['pack', '--pack-destination', dir, '--ignore-scripts', '--silent'], { cwd: REPO, stdio: 'pipe' });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  writeFileSync(join(dir, 'package.json'), '{"name":"consumer","private":true}');
  execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=dev', join(dir, tarball)], { cwd: dir, stdio: 'pipe' });
  bin = join(dir, 'node_modules', '.bin', 'flashback-exporter');
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the packed package', () => {
  it('ships only what a user needs', () => {
    const files = readdirSync(join(dir, 'node_modules', 'flashback-exporter'));
    expect(files.sort()).toEqual(['README.md', 'config.example.yaml', 'config.schema.json', 'dist', 'package.json'].sort());
  });

  it('installs a flashback-exporter command that runs', () => {
    const result = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^flashback-exporter, version /);
  });

  it('polls the demo once from the installed copy', () => {
    const result = spawnSync(bin, ['--demo', '--once'], { encoding: 'utf8', cwd: dir, timeout: 30_000 });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^flashback_private_chat_input_tokens\{target="acme",/m);
  });

  it('validates the shipped example config', () => {
    const result = spawnSync(bin, ['--config.check', `--config.file=${join(dir, 'node_modules', 'flashback-exporter', 'config.example.yaml')}`], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/configuration is valid/);
  });
});
