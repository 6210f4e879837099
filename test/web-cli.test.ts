import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './support/exporter.js';
import { makePki, type Pki } from './support/pki.js';
import { runExporter, spawnExporter, type ExporterProcess } from './support/process.js';
import { get } from './support/web.js';

// Made with `htpasswd -nbBC 10 "" s3cret-Pa55 | tr -d ':\n'` (apache2-utils): a real $2y$ hash.
const HTPASSWD_HASH = '$2y$10$bqQE9Ls1URNzng5QoOKuV.eigmvx3Oi60XzaVprPYNA6DZpLw0ZRS';
const HTPASSWD_PASSWORD = 's3cret-Pa55';

let pki: Pki;
let proc: ExporterProcess | undefined;

beforeAll(() => {
  pki = makePki();
});

afterEach(() => {
  if (proc?.child.exitCode === null) proc.child.kill('SIGKILL');
  proc = undefined;
});

afterAll(() => rmSync(pki.dir, { recursive: true, force: true }));

describe('flashback-exporter --web.config.file', () => {
  it('serves the demo over TLS with basic auth, and exits 0 on SIGTERM', async () => {
    const file = pki.path('cli-web.yml');
    writeFileSync(file, `tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`);
    proc = spawnExporter(['--demo', '--web.listen-address=127.0.0.1:0', `--web.config.file=${file}`]);
    const listening = await proc.waitForLog('listening');
    expect(listening).toMatchObject({ tls: true, basic_auth: true });
    const url = `https://${String(listening.address)}`;
    const scrape = { ca: pki.read('ca.crt'), auth: ['prometheus', HTPASSWD_PASSWORD] as const };

    let body = '';
    await eventually(async () => {
      const answer = await get(url, scrape);
      body = answer.body;
      return answer.status === 200 && body.includes('flashback_private_chat_input_tokens{');
    }, 10_000, 'demo data on /metrics over TLS');
    expect(body).toContain('flashback_exporter_target_up{');

    const denied = await get(url, { ca: pki.read('ca.crt') });
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toBe('Basic realm="flashback-exporter"');
    await expect(get(url.replace('https:', 'http:'))).rejects.toThrow();

    proc.child.kill('SIGTERM');
    expect((await proc.exited).code).toBe(0);
    expect(proc.stderr).not.toContain(HTPASSWD_PASSWORD);
  });

  it('refuses to start with an invalid web config, listing every problem with its line, and no stack trace', async () => {
    const file = pki.path('cli-bad.yml');
    writeFileSync(file, 'tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n  client_auth_type: Always\nbasic_auth_users:\n  alice: doe\n');
    const { code, stderr } = await runExporter(['--demo', '--web.listen-address=127.0.0.1:0', `--web.config.file=${file}`]);
    expect(code).toBe(1);
    expect(stderr.replaceAll(`${pki.dir}/`, '')).toBe(
      [
        'flashback-exporter: invalid web configuration:',
        '  cli-bad.yml:4:3 tls_server_config.client_auth_type: must be one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert',
        '  cli-bad.yml:6:3 basic_auth_users.alice: must be a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31), e.g. from htpasswd -nBC 10 "" | tr -d \':\\n\'',
        '',
      ].join('\n'),
    );
  });

  it('names a missing web config file', async () => {
    const { code, stderr } = await runExporter(['--demo', '--web.listen-address=127.0.0.1:0', '--web.config.file=/nonexistent/web.yml']);
    expect(code).toBe(1);
    expect(stderr).toBe('flashback-exporter: invalid web configuration:\n  /nonexistent/web.yml cannot read web config file: no such file\n');
  });

  it('does not read the web config for --config.check', async () => {
    const { code, stdout } = await runExporter(['--demo', '--config.check', '--web.config.file=/nonexistent/web.yml']);
    expect(code).toBe(0);
    expect(stdout).toContain('<demo>: configuration is valid');
  });
});
