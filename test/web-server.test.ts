import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import bcrypt from 'bcryptjs';
import { loadWebConfig, type WebConfig } from '../src/http/web-config.js';
import { startWebServer, type WebServer } from '../src/http/web-server.js';
import { formatProblem } from '../src/config/yaml.js';
import { FakeFlashback } from './support/fake-flashback.js';
import { fixture, jsonFixture } from './support/fixtures.js';
import { eventually, startExporter, type RunningExporter } from './support/exporter.js';
import { makePki, type Pki } from './support/pki.js';
import { capturedLogger, get, type Answer, type ClientOptions } from './support/web.js';

// Made with `htpasswd -nbBC 10 "" s3cret-Pa55 | tr -d ':\n'` (apache2-utils): a real $2y$ hash.
const HTPASSWD_HASH = '$2y$10$bqQE9Ls1URNzng5QoOKuV.eigmvx3Oi60XzaVprPYNA6DZpLw0ZRS';
const HTPASSWD_PASSWORD = 's3cret-Pa55';

let pki: Pki;
let fake: FakeFlashback;
let running: RunningExporter;
const servers: WebServer[] = [];
let fileCounter = 0;

beforeAll(async () => {
  pki = makePki();
  fake = await FakeFlashback.start(() => ({ body: jsonFixture('api/ok.json') }));
  // The real exporter's handler, mounted behind each web server under test.
  running = await startExporter(`api:\n  baseUrl: ${fake.url}\n  retries: 0\ndefaults:\n  schedule: "0 0 0 1 1 *"\ntargets:\n  - name: acme\n    scope: org\n`);
  await eventually(() => running.exporter.store.ready, 10_000, 'the first poll');
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await running?.close();
  await fake?.close();
  rmSync(pki.dir, { recursive: true, force: true });
});

interface Serving {
  readonly url: string;
  readonly file: string;
  readonly lines: Record<string, unknown>[];
  readonly rawLog: () => string;
  /** Rewrites the web config file in place. */
  rewrite(yaml: string): void;
}

/** Writes a web config next to the certificates, loads it as main does, and serves the exporter with it. */
async function serve(yaml: string | undefined): Promise<Serving> {
  const { log, lines, raw } = capturedLogger();
  const file = pki.path(`web-${++fileCounter}.yml`);
  let webConfig: WebConfig | undefined;
  if (yaml !== undefined) {
    writeFileSync(file, yaml);
    const loaded = await loadWebConfig(file);
    if (!loaded.ok) throw new Error(`bad test web config:\n${loaded.problems.map(formatProblem).join('\n')}`);
    webConfig = loaded.config;
  }
  const server = await startWebServer({ handler: running.exporter.handler, address: { host: '127.0.0.1', port: 0 }, log, webConfig });
  servers.push(server);
  return {
    url: `${server.tls ? 'https' : 'http'}://127.0.0.1:${server.address.port}`,
    file,
    lines,
    rawLog: raw,
    rewrite: (next) => writeFileSync(file, next),
  };
}

const TLS = 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n';
const tlsWith = (extra: string) => `${TLS}${extra}`;
const trusted = (): ClientOptions => ({ ca: pki.read('ca.crt') });
const withCert = (name: string): ClientOptions => ({ ...trusted(), cert: pki.read(`${name}.crt`), key: pki.read(`${name}.key`) });
const fails = (p: Promise<Answer>) => expect(p).rejects.toThrow();

describe('TLS', () => {
  it('serves plain HTTP, no auth, when there is no web config', async () => {
    const { url } = await serve(undefined);
    expect(url).toMatch(/^http:/);
    expect((await get(url)).status).toBe(200);
  });

  it('serves HTTPS with the configured certificate, which the client verifies against the throwaway CA', async () => {
    const { url } = await serve(TLS);
    const answer = await get(url, trusted());
    expect(answer.status).toBe(200);
    expect(answer.body).toContain('flashback_private_chat_input_tokens{');
    expect(answer.serverCN).toBe('flashback-exporter one');
    expect(answer.protocol).toBe('TLSv1.3');
  });

  it('fails the handshake for a client that trusts another CA', async () => {
    const { url } = await serve(TLS);
    await expect(get(url, { ca: pki.read('other-ca.crt') })).rejects.toThrow(/unable to verify|self.signed|certificate/i);
  });

  it('does not answer plain HTTP on the HTTPS port, nor HTTPS on a plain port', async () => {
    const https = await serve(TLS);
    await fails(get(https.url.replace('https:', 'http:')));
    const plain = await serve(`basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`);
    await fails(get(plain.url.replace('http:', 'https:'), trusted()));
  });

  it('takes the certificate and key inline as well as from files', async () => {
    const indent = (pem: string) => pem.trimEnd().split('\n').map((l) => `    ${l}`).join('\n');
    const { url } = await serve(`tls_server_config:\n  cert: |\n${indent(pki.read('server.crt'))}\n  key: |\n${indent(pki.read('server.key'))}\n`);
    expect((await get(url, trusted())).serverCN).toBe('flashback-exporter one');
  });
});

describe('client certificates, per client_auth_type', () => {
  const CA = 'client_ca_file: ca.crt\n';
  // [client_auth_type, needs the CA, client certificate (none, from our CA, from another CA, self-signed) → accepted?]
  const cases: [string, boolean, Record<'none' | 'client' | 'client-other' | 'client-self', boolean>][] = [
    ['NoClientCert', false, { none: true, client: true, 'client-other': true, 'client-self': true }],
    ['RequestClientCert', false, { none: true, client: true, 'client-other': true, 'client-self': true }],
    ['RequireAnyClientCert', false, { none: false, client: true, 'client-other': true, 'client-self': true }],
    ['VerifyClientCertIfGiven', true, { none: true, client: true, 'client-other': false, 'client-self': false }],
    ['RequireAndVerifyClientCert', true, { none: false, client: true, 'client-other': false, 'client-self': false }],
  ];
  it.each(cases)('%s accepts and refuses exactly the clients Go would', async (type, needsCa, expected) => {
    const { url } = await serve(tlsWith(`  client_auth_type: ${type}\n${needsCa ? `  ${CA}` : ''}`));
    for (const [client, accepted] of Object.entries(expected)) {
      const attempt = get(url, client === 'none' ? trusted() : withCert(client));
      if (accepted) expect((await attempt).status, `${type} with ${client}`).toBe(200);
      else await expect(attempt, `${type} with ${client}`).rejects.toThrow();
    }
  });

  it('client_allowed_sans lets in only certificates with one of the listed SANs, DNS or URI', async () => {
    const dns = await serve(tlsWith(`  client_auth_type: RequireAndVerifyClientCert\n  ${CA}  client_allowed_sans: [prometheus.example]\n`));
    expect((await get(dns.url, withCert('client'))).status).toBe(200);
    const uri = await serve(tlsWith(`  client_auth_type: RequireAndVerifyClientCert\n  ${CA}  client_allowed_sans: ["spiffe://test/prometheus"]\n`));
    expect((await get(uri.url, withCert('client'))).status).toBe(200);
    const other = await serve(tlsWith(`  client_auth_type: RequireAndVerifyClientCert\n  ${CA}  client_allowed_sans: [grafana.example, "spiffe://test/grafana"]\n`));
    await fails(get(other.url, withCert('client')));
    expect(other.lines.some((l) => l.msg === 'TLS client refused' && l.reason === 'client certificate has none of client_allowed_sans')).toBe(true);
  });
});

describe('TLS versions, cipher suites and curves', () => {
  it('defaults to TLS 1.2 at least, as the toolkit: a TLS 1.1 client is refused', async () => {
    const { url } = await serve(TLS);
    await fails(get(url, { ...trusted(), minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }));
    expect((await get(url, { ...trusted(), maxVersion: 'TLSv1.2' })).protocol).toBe('TLSv1.2');
  });

  it('enforces min_version: a TLS 1.2 client is refused by a TLS13 server and accepted by a default one', async () => {
    const client = { ...trusted(), maxVersion: 'TLSv1.2' as const };
    const strict = await serve(tlsWith('  min_version: TLS13\n'));
    await fails(get(strict.url, client));
    const lenient = await serve(TLS);
    expect((await get(lenient.url, client)).status).toBe(200);
  });

  it('enforces max_version: a TLS 1.3 client gets TLS 1.2 from a TLS12 server, and nothing if it insists on 1.3', async () => {
    const { url } = await serve(tlsWith('  max_version: TLS12\n'));
    expect((await get(url, trusted())).protocol).toBe('TLSv1.2');
    await fails(get(url, { ...trusted(), minVersion: 'TLSv1.3' }));
  });

  it('offers only the configured TLS 1.2 cipher suites, in the server\'s order unless prefer_server_cipher_suites is false', async () => {
    const suites = '  min_version: TLS12\n  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n';
    const serverOrder = await serve(tlsWith(suites));
    await fails(get(serverOrder.url, { ...trusted(), ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305' }));
    const clientPrefers256 = { ...trusted(), ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256' };
    expect((await get(serverOrder.url, clientPrefers256)).cipher).toBe('TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256');
    const clientOrder = await serve(tlsWith(`${suites}  prefer_server_cipher_suites: false\n`));
    expect((await get(clientOrder.url, clientPrefers256)).cipher).toBe('TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384');
  });

  it('uses only the configured curves for the key exchange', async () => {
    const { url } = await serve(tlsWith('  curve_preferences: [CurveP521]\n'));
    expect((await get(url, { ...trusted(), ecdhCurve: 'P-521' })).status).toBe(200);
    await fails(get(url, { ...trusted(), ecdhCurve: 'P-384' }));
  });
});

describe('basic auth', () => {
  const USERS = `basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n  grafana: '${bcrypt.hashSync('grafana-pw', 6)}'\n`;

  it('lets in the right user and password, with the $2y$ hash htpasswd made and a $2b$ one from bcryptjs', async () => {
    const { url } = await serve(tlsWith(USERS));
    expect((await get(url, { ...trusted(), auth: ['prometheus', HTPASSWD_PASSWORD] })).status).toBe(200);
    expect((await get(url, { ...trusted(), auth: ['grafana', 'grafana-pw'] })).status).toBe(200);
  });

  it.each([
    ['a wrong password', ['prometheus', 'wrong'] as const],
    ['an unknown user', ['nobody', HTPASSWD_PASSWORD] as const],
    ['another user\'s password', ['grafana', HTPASSWD_PASSWORD] as const],
    ['an empty password', ['prometheus', ''] as const],
    ['no credentials', undefined],
  ])('answers %s with 401 and a Basic challenge', async (_what, auth) => {
    const { url } = await serve(tlsWith(USERS));
    const answer = await get(url, { ...trusted(), ...(auth ? { auth } : {}) });
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toBe('Basic realm="flashback-exporter"');
    expect(answer.body).toBe('Unauthorized\n');
  });

  it('works over plain HTTP too, and never writes a password to the log', async () => {
    const { url, rawLog } = await serve(USERS);
    expect((await get(url, { auth: ['prometheus', HTPASSWD_PASSWORD] })).status).toBe(200);
    expect((await get(url, { auth: ['prometheus', 'hunter2-wrong'] })).status).toBe(401);
    expect(rawLog()).not.toContain(HTPASSWD_PASSWORD);
    expect(rawLog()).not.toContain('hunter2-wrong');
  });

  it('protects every path, the probes included, unless the file opens them', async () => {
    const { url } = await serve(tlsWith(USERS));
    for (const path of ['/metrics', '/', '/-/healthy', '/-/ready', '/-/reload', '/nope']) {
      expect((await get(url, { ...trusted(), path })).status, path).toBe(401);
    }
  });

  it('answers the probes without credentials when flashback_exporter.basic_auth_excluded_paths lists them, and nothing else', async () => {
    const { url } = await serve(tlsWith(`${USERS}flashback_exporter:\n  basic_auth_excluded_paths: [/-/healthy, /-/ready]\n`));
    expect((await get(url, { ...trusted(), path: '/-/healthy' })).status).toBe(200);
    expect((await get(url, { ...trusted(), path: '/-/healthy?probe=kubelet' })).status).toBe(200);
    expect((await get(url, { ...trusted(), path: '/-/ready' })).status).toBe(200);
    for (const path of ['/metrics', '/', '/-/healthy/', '/-/reload']) expect((await get(url, { ...trusted(), path })).status, path).toBe(401);
    const open = await serve(tlsWith(`${USERS}flashback_exporter:\n  basic_auth_excluded_paths: [/-/healthy]\n`));
    expect((await get(open.url, { ...trusted(), path: '/-/ready' })).status).toBe(401);
  });

  it('makes an unknown user cost as much as a known one: both run bcrypt at the same cost', async () => {
    const { url } = await serve(tlsWith(`basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`));
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: pki.read('ca.crt') });
    const timed = async (auth?: readonly [string, string]) => {
      const started = performance.now();
      expect((await get(url, { ...trusted(), agent, ...(auth ? { auth } : {}) })).status).toBe(401);
      return performance.now() - started;
    };
    await timed(); // the handshake, out of the measurements
    const known: number[] = [];
    const unknown: number[] = [];
    const none: number[] = [];
    // Interleaved, with a new password each time so no outcome is cached.
    for (let i = 0; i < 5; i++) {
      known.push(await timed(['prometheus', `wrong-${i}`]));
      unknown.push(await timed(['nobody', `wrong-${i}`]));
      none.push(await timed());
    }
    agent.destroy();
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const ratio = median(unknown) / median(known);
    expect(ratio, `unknown ${median(unknown).toFixed(1)} ms vs known ${median(known).toFixed(1)} ms`).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
    // bcrypt really ran for both: a request without credentials is far cheaper.
    expect(median(known) / median(none)).toBeGreaterThan(4);
  });

  it('does not pay bcrypt again for credentials it has verified (Prometheus every 15 s)', async () => {
    const { url } = await serve(tlsWith(`basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`));
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: pki.read('ca.crt') });
    const timed = async (auth: readonly [string, string]) => {
      const started = performance.now();
      expect((await get(url, { ...trusted(), agent, path: '/-/healthy', auth })).status).toBe(auth[1] === HTPASSWD_PASSWORD ? 200 : 401);
      return performance.now() - started;
    };
    const first = await timed(['prometheus', HTPASSWD_PASSWORD]);
    const again: number[] = [];
    for (let i = 0; i < 5; i++) again.push(await timed(['prometheus', HTPASSWD_PASSWORD]));
    agent.destroy();
    expect(Math.max(...again) * 2).toBeLessThan(first);
  });
});

describe('shutdown', () => {
  it('close() ends kept-alive HTTPS connections at once and frees the port', async () => {
    const { log } = capturedLogger();
    writeFileSync(pki.path('shutdown.yml'), TLS);
    const config = await loadWebConfig(pki.path('shutdown.yml'));
    expect(config.ok).toBe(true);
    const server = await startWebServer({ handler: running.exporter.handler, address: { host: '127.0.0.1', port: 0 }, log, webConfig: config.ok ? config.config : undefined });
    const url = `https://127.0.0.1:${server.address.port}`;
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: pki.read('ca.crt') });
    expect((await get(url, { ...trusted(), agent })).status).toBe(200);
    const socket = Object.values(agent.freeSockets).flat()[0]!;
    const socketClosed = new Promise((resolve) => socket.once('close', resolve));
    await server.close();
    await socketClosed;
    await fails(get(url, trusted()));
    agent.destroy();
  });
});

describe('headers', () => {
  it('adds the configured headers to every answer: 200, 401 and 404', async () => {
    const { url } = await serve(tlsWith(`${fixture('web/valid/headers.yml')}basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`));
    const ok = await get(url, { ...trusted(), auth: ['prometheus', HTPASSWD_PASSWORD] });
    const denied = await get(url, trusted());
    const missing = await get(url, { ...trusted(), auth: ['prometheus', HTPASSWD_PASSWORD], path: '/nope' });
    expect([ok.status, denied.status, missing.status]).toEqual([200, 401, 404]);
    for (const answer of [ok, denied, missing]) {
      expect(answer.headers).toMatchObject({
        'x-frame-options': 'deny',
        'strict-transport-security': 'max-age=31536000; includeSubDomains',
        'x-content-type-options': 'nosniff',
        'x-xss-protection': '1',
        'content-security-policy': "default-src 'self' *.test.example.net",
      });
    }
  });
});

describe('rotation without restart', () => {
  it('presents a rewritten certificate and key at the next handshake', async () => {
    copyFileSync(pki.path('server.crt'), pki.path('rotating.crt'));
    copyFileSync(pki.path('server.key'), pki.path('rotating.key'));
    const { url, lines } = await serve('tls_server_config:\n  cert_file: rotating.crt\n  key_file: rotating.key\n');
    expect((await get(url, trusted())).serverCN).toBe('flashback-exporter one');
    // As cert-manager or a renewal script would: the files change, the web config does not.
    copyFileSync(pki.path('server2.key'), pki.path('rotating.key'));
    copyFileSync(pki.path('server2.crt'), pki.path('rotating.crt'));
    expect((await get(url, trusted())).serverCN).toBe('flashback-exporter two');
    expect(lines.filter((l) => l.msg === 'web config reloaded')).toHaveLength(1);
  });

  it('applies a new client_auth_type to the next connection, even one resuming an earlier TLS session', async () => {
    const { url, rewrite } = await serve(TLS);
    // A new connection per request, but TLS sessions cached and offered for resumption.
    const resuming = new HttpsAgent({ keepAlive: false, maxCachedSessions: 10, ca: pki.read('ca.crt') });
    expect((await get(url, { ...trusted(), agent: resuming })).status).toBe(200);
    expect((await get(url, { ...trusted(), agent: resuming })).resumed).toBe(true);
    rewrite(tlsWith('  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n'));
    await fails(get(url, { ...trusted(), agent: resuming }));
    await fails(get(url, trusted()));
    expect((await get(url, withCert('client'))).status).toBe(200);
    resuming.destroy();
  });

  it('rotates users on a kept-alive connection: the old password stops working at the next request', async () => {
    const { url, rewrite } = await serve(tlsWith(`basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`));
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: pki.read('ca.crt') });
    const sockets = new Set<unknown>();
    const scrape = async (auth: readonly [string, string]) => {
      const answer = await get(url, { ...trusted(), agent, auth });
      for (const list of Object.values(agent.sockets)) for (const s of list ?? []) sockets.add(s);
      for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) sockets.add(s);
      return answer.status;
    };
    expect(await scrape(['prometheus', HTPASSWD_PASSWORD])).toBe(200);
    rewrite(tlsWith(`basic_auth_users:\n  prometheus: '${bcrypt.hashSync('rotated-pw', 6)}'\n`));
    expect(await scrape(['prometheus', HTPASSWD_PASSWORD])).toBe(401);
    expect(await scrape(['prometheus', 'rotated-pw'])).toBe(200);
    agent.destroy();
    expect(sockets.size).toBe(1);
  });

  it('keeps the last good config through a broken edit, logging every problem once, and takes the fixed one', async () => {
    const { url, rewrite, lines } = await serve(tlsWith(`basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`));
    rewrite(tlsWith(`basic_auth_users:\n  prometheus: not-a-hash\n  grafana: [1]\nbasic_auth_user: {}\n`));
    for (let i = 0; i < 3; i++) {
      expect((await get(url, trusted())).status).toBe(401);
      expect((await get(url, { ...trusted(), auth: ['prometheus', HTPASSWD_PASSWORD] })).status).toBe(200);
    }
    const failures = lines.filter((l) => l.msg === 'web config reload failed; keeping the last good web config').map((l) => String(l.problem).replaceAll(`${pki.dir}/`, ''));
    expect(failures).toEqual([
      expect.stringMatching(/^web-\d+\.yml:5:3 basic_auth_users\.prometheus: must be a bcrypt hash/),
      expect.stringMatching(/^web-\d+\.yml:6:3 basic_auth_users\.grafana: must be a bcrypt hash/),
      expect.stringMatching(/^web-\d+\.yml:7:1 basic_auth_user: unknown key \(did you mean "basic_auth_users"\?\)$/),
    ]);
    rewrite(tlsWith('basic_auth_users: {}\n'));
    expect((await get(url, trusted())).status).toBe(200);
    expect(lines.filter((l) => l.msg === 'web config reloaded')).toHaveLength(1);
  });

  it('keeps serving the last good certificate while its file is missing or broken', async () => {
    copyFileSync(pki.path('server.crt'), pki.path('flaky.crt'));
    const { url, lines } = await serve('tls_server_config:\n  cert_file: flaky.crt\n  key_file: server.key\n');
    writeFileSync(pki.path('flaky.crt'), 'half-written');
    expect((await get(url, trusted())).serverCN).toBe('flashback-exporter one');
    rmSync(pki.path('flaky.crt'));
    expect((await get(url, trusted())).serverCN).toBe('flashback-exporter one');
    expect(lines.filter((l) => l.msg === 'web config reload failed; keeping the last good web config').map((l) => String(l.problem).replaceAll(`${pki.dir}/`, ''))).toEqual([
      expect.stringMatching(/tls_server_config\.cert_file: holds no PEM certificate/),
      expect.stringMatching(/tls_server_config\.cert_file: cannot read "flaky\.crt": no such file$/),
    ]);
  });

  it('refuses to switch between HTTP and HTTPS without a restart', async () => {
    const { url, rewrite, lines } = await serve(TLS);
    rewrite(`basic_auth_users:\n  prometheus: '${HTPASSWD_HASH}'\n`);
    expect((await get(url, trusted())).status).toBe(200);
    expect(lines.some((l) => String(l.problem).endsWith('tls_server_config: switching between HTTP and HTTPS needs a restart'))).toBe(true);
  });
});
