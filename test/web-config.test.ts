import { copyFileSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import bcrypt from 'bcryptjs';
import { formatProblem } from '../src/config/yaml.js';
import { loadWebConfig } from '../src/http/web-config.js';
import { BCRYPT_HASH_RE, BasicAuthenticator, costOf, dummyHashFor, parseBasicAuth } from '../src/http/basic-auth.js';
import { fixture } from './support/fixtures.js';
import { makePki, type Pki } from './support/pki.js';

// Made with `htpasswd -nbBC 10 "" s3cret-Pa55 | tr -d ':\n'` (apache2-utils), as the toolkit's docs say.
export const HTPASSWD_HASH = '$2y$10$bqQE9Ls1URNzng5QoOKuV.eigmvx3Oi60XzaVprPYNA6DZpLw0ZRS';
export const HTPASSWD_PASSWORD = 's3cret-Pa55';

const fixtures = (kind: 'valid' | 'invalid') =>
  readdirSync(new URL(`./fixtures/web/${kind}/`, import.meta.url)).filter((f) => f.endsWith('.yml'));

let pki: Pki;
beforeAll(() => {
  pki = makePki();
});
afterAll(() => rmSync(pki.dir, { recursive: true, force: true }));

/** Loads a fixture from the PKI folder, where its relative certificate paths point. */
async function load(kind: 'valid' | 'invalid', file: string) {
  copyFileSync(new URL(`./fixtures/web/${kind}/${file}`, import.meta.url), pki.path(file));
  return loadWebConfig(pki.path(file));
}

describe('web config validation', () => {
  it.each(fixtures('invalid'))('reports every problem in %s with its line, column and path', async (file) => {
    const result = await load('invalid', file);
    const expected = fixture(`web/invalid/${file.replace(/\.yml$/, '.errors')}`).trimEnd().split('\n');
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.problems.map((p) => formatProblem(p).replaceAll(`${pki.dir}/`, ''))).toEqual(expected);
  });

  it('mirrors the toolkit\'s bad-config cases and has an expected-errors file for each', () => {
    expect(fixtures('invalid').length).toBeGreaterThanOrEqual(30);
    for (const file of fixtures('invalid')) expect(() => fixture(`web/invalid/${file.replace(/\.yml$/, '.errors')}`)).not.toThrow();
  });

  it.each(fixtures('valid'))('accepts %s', async (file) => {
    const result = await load('valid', file);
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
  });

  it('serves plain HTTP without auth for an empty file, and for cert and key left blank by a template', async () => {
    for (const file of ['empty.yml', 'blank-template.yml']) {
      const result = await load('valid', file);
      expect(result.ok && result.config.tls === undefined && result.config.users.size === 0).toBe(true);
    }
  });

  it('resolves certificate paths relative to the web config file, not the working directory', async () => {
    const result = await load('valid', 'no-auth.yml');
    expect(process.cwd()).not.toBe(pki.dir);
    expect(result.ok && result.config.stamps.map((s) => s.path)).toEqual([pki.path('no-auth.yml'), pki.path('server.crt'), pki.path('server.key')]);
  });

  it('takes the certificate and key inline, as PEM text in the file', async () => {
    const indent = (pem: string) => pem.trimEnd().split('\n').map((l) => `    ${l}`).join('\n');
    writeFileSync(pki.path('inline.yml'), `tls_server_config:\n  cert: |\n${indent(pki.read('server.crt'))}\n  key: |\n${indent(pki.read('server.key'))}\n`);
    const result = await loadWebConfig(pki.path('inline.yml'));
    expect(result.ok && result.config.tls?.options.cert).toBe(pki.read('server.crt').trimEnd() + '\n');
  });

  it('reads the toolkit\'s header values the way Go does: a YAML number becomes its text', async () => {
    const result = await load('valid', 'headers.yml');
    expect(result.ok && result.config.headers).toEqual({
      'X-Frame-Options': 'deny',
      'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
      'X-Content-Type-Options': 'nosniff',
      'X-XSS-Protection': '1',
      'Content-Security-Policy': "default-src 'self' *.test.example.net",
    });
  });

  it('maps the toolkit\'s TLS names to OpenSSL\'s, keeping TLS 1.3 suites always on as Go does', async () => {
    writeFileSync(
      pki.path('ciphers.yml'),
      'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n  max_version: TLS12\n' +
        '  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n' +
        '  prefer_server_cipher_suites: false\n  curve_preferences: [X25519, CurveP256]\n',
    );
    const result = await loadWebConfig(pki.path('ciphers.yml'));
    expect(result.ok && result.config.tls?.options).toMatchObject({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256',
      ecdhCurve: 'X25519:P-256',
      honorCipherOrder: false,
    });
  });

  it('accepts the example in docs/web-config.md', async () => {
    const doc = readFileSync(new URL('../docs/web-config.md', import.meta.url), 'utf8');
    const example = /## Example\n\n```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toContain('tls_server_config:');
    writeFileSync(pki.path('doc-example.yml'), example!);
    const result = await loadWebConfig(pki.path('doc-example.yml'));
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
    expect(result.ok && [result.config.tls !== undefined, [...result.config.users.keys()], [...result.config.authExcludedPaths]]).toEqual([true, ['prometheus'], ['/-/healthy', '/-/ready']]);
  });

  it('reports a missing web config file by its path', async () => {
    const result = await loadWebConfig('/nonexistent/web.yml');
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual(['/nonexistent/web.yml cannot read web config file: no such file']);
  });
});

describe('bcrypt hashes', () => {
  it('accepts the $2y$ hashes htpasswd makes, and $2a$ and $2b$, but nothing else', () => {
    expect(HTPASSWD_HASH).toMatch(BCRYPT_HASH_RE);
    expect(HTPASSWD_HASH.replace('$2y$', '$2a$')).toMatch(BCRYPT_HASH_RE);
    expect(bcrypt.hashSync('x', 4)).toMatch(BCRYPT_HASH_RE);
    for (const bad of ['doe', HTPASSWD_HASH.replace('$2y$', '$2x$'), HTPASSWD_HASH.replace('$10$', '$03$'), HTPASSWD_HASH.slice(0, -1), '$apr1$abc$def']) {
      expect(bad).not.toMatch(BCRYPT_HASH_RE);
    }
  });

  it('verifies a password against an htpasswd $2y$ hash with bcryptjs as is', async () => {
    const auth = new BasicAuthenticator();
    const users = new Map([['prometheus', HTPASSWD_HASH]]);
    const header = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    expect(await auth.verify(header('prometheus', HTPASSWD_PASSWORD), users, dummyHashFor([HTPASSWD_HASH]))).toBe(true);
    expect(await auth.verify(header('prometheus', 'wrong'), users, dummyHashFor([HTPASSWD_HASH]))).toBe(false);
  });

  it('makes the dummy hash for unknown users at the cost most users have', () => {
    expect(costOf(dummyHashFor([HTPASSWD_HASH]))).toBe(10);
    expect(costOf(dummyHashFor([bcrypt.hashSync('a', 4), bcrypt.hashSync('b', 4), HTPASSWD_HASH]))).toBe(4);
    expect(costOf(dummyHashFor([]))).toBe(10);
    expect(dummyHashFor([HTPASSWD_HASH])).toMatch(BCRYPT_HASH_RE);
  });

  it('reads Authorization headers as Go\'s BasicAuth does', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    expect(parseBasicAuth(`Basic ${b64('alice:pa:ss')}`)).toEqual({ user: 'alice', password: 'pa:ss' });
    expect(parseBasicAuth(`basic ${b64('alice:')}`)).toEqual({ user: 'alice', password: '' });
    expect(parseBasicAuth(`Basic ${b64('zoë:paß')}`)).toEqual({ user: 'zoë', password: 'paß' });
    for (const bad of [undefined, '', 'Basic', `Bearer ${b64('a:b')}`, `Basic ${b64('no-colon')}`, 'Basic !!!']) expect(parseBasicAuth(bad)).toBeUndefined();
  });

  it('runs bcrypt once for credentials it has seen, and once for identical checks in flight together', async () => {
    let calls = 0;
    const auth = new BasicAuthenticator({ compare: async (password, hash) => (calls++, bcrypt.compare(password, hash)) });
    const hash = bcrypt.hashSync('right', 4);
    const users = new Map([['alice', hash]]);
    const header = (password: string) => `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`;
    const dummy = dummyHashFor([hash]);
    expect(await Promise.all([auth.verify(header('right'), users, dummy), auth.verify(header('right'), users, dummy)])).toEqual([true, true]);
    expect(calls).toBe(1);
    for (let i = 0; i < 5; i++) expect(await auth.verify(header('right'), users, dummy)).toBe(true);
    expect(await auth.verify(header('wrong'), users, dummy)).toBe(false);
    expect(await auth.verify(header('wrong'), users, dummy)).toBe(false);
    expect(calls).toBe(2);
    // A rotated hash is a different key: the old outcome does not apply.
    const rotated = new Map([['alice', bcrypt.hashSync('new', 4)]]);
    expect(await auth.verify(header('right'), rotated, dummy)).toBe(false);
    expect(calls).toBe(3);
  });

  it('keeps at most cacheSize outcomes, dropping the least recently used', async () => {
    let calls = 0;
    const auth = new BasicAuthenticator({ cacheSize: 2, compare: async () => (calls++, false) });
    const users = new Map([['alice', bcrypt.hashSync('x', 4)]]);
    const header = (password: string) => `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`;
    const dummy = dummyHashFor([]);
    for (const p of ['a', 'b', 'a', 'c', 'a']) await auth.verify(header(p), users, dummy);
    // a, b computed; a hit; c evicts b (a was used more recently); a still a hit.
    expect(calls).toBe(3);
    await auth.verify(header('b'), users, dummy);
    expect(calls).toBe(4);
  });
});
