import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { validateHeaderValue } from 'node:http';
import { dirname, resolve } from 'node:path';
import { createSecureContext, type SecureContextOptions, type SecureVersion } from 'node:tls';
import * as z from 'zod';
import { validateYaml, type ConfigProblem, type YamlLocator, type YamlPath } from '../config/yaml.js';
import { BCRYPT_HASH_RE, dummyHashFor } from './basic-auth.js';

// The exporter-toolkit web configuration (prometheus/exporter-toolkit docs/web-configuration.md),
// the file every Prometheus exporter takes with --web.config.file, so one file serves them all.
// Differences from the toolkit are deliberate and documented in docs/web-config.md: problems
// the toolkit finds only at the first handshake (or never) are refused when the file loads.

/** How the server treats client certificates; the names of Go's tls.ClientAuthType. */
export const CLIENT_AUTH_TYPES = ['NoClientCert', 'RequestClientCert', 'RequireAnyClientCert', 'VerifyClientCertIfGiven', 'RequireAndVerifyClientCert'] as const;
/** One of CLIENT_AUTH_TYPES; the toolkit's old alias RequireClientCert is mapped on load. */
export type ClientAuthType = (typeof CLIENT_AUTH_TYPES)[number];

const TLS_VERSIONS: Record<string, SecureVersion> = { TLS10: 'TLSv1', TLS11: 'TLSv1.1', TLS12: 'TLSv1.2', TLS13: 'TLSv1.3' };
const VERSION_ORDER: readonly SecureVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

// Go's names (tls.CipherSuites(), the list the toolkit accepts) → OpenSSL's. Go does not let
// TLS 1.3 suites be chosen: they are accepted and always enabled, here as there.
const TLS12_CIPHERS: Record<string, string> = {
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
};
const TLS13_CIPHERS = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];
const CURVES: Record<string, string> = { CurveP256: 'P-256', CurveP384: 'P-384', CurveP521: 'P-521', X25519: 'X25519' };

/** Headers the file may set, with their allowed values (none listed: any); the toolkit's allow-list. */
export const ALLOWED_HEADERS: Readonly<Record<string, readonly string[] | undefined>> = {
  'Strict-Transport-Security': undefined,
  'X-Content-Type-Options': ['nosniff'],
  'X-Frame-Options': ['deny', 'sameorigin'],
  'X-XSS-Protection': undefined,
  'Content-Security-Policy': undefined,
};

/** The only paths `flashback_exporter.basic_auth_excluded_paths` may open: the probes. */
export const PROBE_PATHS = ['/-/healthy', '/-/ready'] as const;

function expect(message: string) {
  return (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : message);
}
const oneOf = (values: readonly string[]) => z.enum(values as [string, ...string[]], { error: expect(`must be one of ${values.join(', ')}`) });
const text = (what: string) => z.string({ error: expect(`must be ${what}`) });
const unsupported = (why: string) => z.any().refine(() => false, { error: why }).optional();

// Go's YAML decoder turns a scalar into the string a header needs (`X-XSS-Protection: 1`).
const headerValue = z.union([z.string(), z.number()], { error: expect('must be a string') }).transform(String);

/** The file as written. Every object is strict: an unknown key is an error, not ignored. */
export const WebConfigSchema = z.strictObject({
  tls_server_config: z
    .strictObject({
      cert: text('a PEM certificate').optional(),
      key: text('a PEM private key').optional(),
      client_ca: text('PEM CA certificates').optional(),
      cert_file: text('a file path').optional(),
      key_file: text('a file path').optional(),
      client_ca_file: text('a file path').optional(),
      // RequireClientCert is the toolkit's old name for RequireAnyClientCert, still accepted there.
      client_auth_type: z.enum([...CLIENT_AUTH_TYPES, 'RequireClientCert'], { error: expect(`must be one of ${CLIENT_AUTH_TYPES.join(', ')}`) }).optional(),
      client_allowed_sans: z.array(text('a string'), { error: expect('must be a list of strings') }).optional(),
      min_version: oneOf(Object.keys(TLS_VERSIONS)).optional(),
      max_version: oneOf(Object.keys(TLS_VERSIONS)).optional(),
      cipher_suites: z.array(oneOf([...Object.keys(TLS12_CIPHERS), ...TLS13_CIPHERS]), { error: expect('must be a list of cipher suite names') }).optional(),
      prefer_server_cipher_suites: z.boolean({ error: expect('must be true or false') }).optional(),
      curve_preferences: z.array(oneOf(Object.keys(CURVES)), { error: expect('must be a list of curve names') }).optional(),
    })
    .nullish(),
  http_server_config: z
    .strictObject({
      http2: z.boolean({ error: expect('must be true or false') }).optional(),
      headers: z
        .strictObject(Object.fromEntries(Object.keys(ALLOWED_HEADERS).map((h) => [h, headerValue.optional()])) as Record<string, z.ZodOptional<typeof headerValue>>)
        .nullish(),
    })
    .nullish(),
  basic_auth_users: z
    .record(text('a user name'), text('a bcrypt hash').regex(BCRYPT_HASH_RE, { error: 'must be a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31), e.g. from htpasswd -nBC 10 "" | tr -d \':\\n\'' }), {
      error: expect('must be a mapping of user names to bcrypt hashes'),
    })
    .nullish(),
  rate_limit: unsupported('is part of the exporter-toolkit format but not supported by flashback-exporter; rate-limit in a reverse proxy'),
  // Not in the toolkit's format: settings only this exporter has, under a key of its own.
  flashback_exporter: z
    .strictObject({
      basic_auth_excluded_paths: z.array(oneOf(PROBE_PATHS), { error: expect(`must be a list of paths from ${PROBE_PATHS.join(', ')}`) }).optional(),
    })
    .nullish(),
});

/** TLS as the server applies it: the options of the secure context and the checks after a handshake. */
export interface TlsSettings {
  /** For `https.createServer` and `server.setSecureContext`. */
  readonly options: SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean };
  readonly clientAuth: ClientAuthType;
  /** A client certificate must carry one of these SANs (DNS, IP, email or URI), exactly. */
  readonly allowedSans: readonly string[] | undefined;
  /** The server certificate's end of validity, to warn before it lapses. */
  readonly certNotAfter: Date;
}

/** A loaded, checked web config: everything the server needs, with no file left to read. */
export interface WebConfig {
  readonly file: string;
  readonly tls: TlsSettings | undefined;
  /** User → bcrypt hash; empty: no basic auth. */
  readonly users: ReadonlyMap<string, string>;
  /** Compared against when the user is unknown, at the cost most users' hashes have. */
  readonly dummyHash: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Paths that answer without basic auth (only probes may be listed). */
  readonly authExcludedPaths: ReadonlySet<string>;
  /** The files read to build this config, as they were: a change to any of them means reload. */
  readonly stamps: readonly FileStamp[];
}

/** A file's identity and last change, to notice rewrites, renames and Kubernetes' symlink swaps. */
export interface FileStamp {
  readonly path: string;
  readonly stamp: string;
}

/** A usable config, or every problem found, with the files read so a retry waits for a change. */
export type WebConfigResult = { ok: true; config: WebConfig } | { ok: false; problems: ConfigProblem[]; stamps: readonly FileStamp[] };

/** The stamp of a file now; missing files have one too, so their appearance is noticed. */
export async function stampOf(path: string): Promise<FileStamp> {
  try {
    const s = await stat(path, { bigint: true });
    return { path, stamp: `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}` };
  } catch (err) {
    return { path, stamp: `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}` };
  }
}

/** True when any of the files differs from when it was stamped. */
export async function changed(stamps: readonly FileStamp[]): Promise<boolean> {
  const now = await Promise.all(stamps.map((s) => stampOf(s.path)));
  return now.some((s, i) => s.stamp !== stamps[i]!.stamp);
}

/**
 * Reads and checks a web config file and every file it names (relative paths are relative
 * to the web config's own folder, as in the toolkit). Never throws: every problem comes back
 * at once, each located at the key that caused it.
 */
export async function loadWebConfig(path: string): Promise<WebConfigResult> {
  const stamps: FileStamp[] = [await stampOf(path)];
  let source: string;
  try {
    source = await readFile(path, 'utf8');
  } catch (err) {
    return { ok: false, stamps, problems: [{ file: path, line: undefined, column: undefined, path: '', message: `cannot read web config file: ${describeReadError(err)}` }] };
  }
  const parsed = validateYaml(WebConfigSchema, source, path, { whenEmpty: () => ({}) });
  if (!parsed.ok) return { ok: false, stamps, problems: parsed.problems };
  return build(parsed.data, parsed.locate, path, stamps);
}

type Raw = z.output<typeof WebConfigSchema>;
type RawTls = NonNullable<Raw['tls_server_config']>;

async function build(raw: Raw, locate: YamlLocator, file: string, stamps: FileStamp[]): Promise<WebConfigResult> {
  const problems: ConfigProblem[] = [];
  const problem = (path: YamlPath, message: string) => problems.push(locate.problem(path, message));
  const readPem = async (key: string, pathValue: string): Promise<string | undefined> => {
    const full = resolve(dirname(file), pathValue);
    stamps.push(await stampOf(full));
    try {
      return await readFile(full, 'utf8');
    } catch (err) {
      problem(['tls_server_config', key], `cannot read ${JSON.stringify(full)}: ${describeReadError(err)}`);
      return undefined;
    }
  };

  const tls = raw.tls_server_config ? await buildTls(raw.tls_server_config, problem, readPem) : undefined;

  const users = new Map(Object.entries(raw.basic_auth_users ?? {}));
  for (const user of users.keys()) {
    // Basic auth splits user from password at the first colon; such a user could never log in.
    if (user.includes(':')) problem(['basic_auth_users', user], 'a user name cannot contain ":"');
    if (user === '') problem(['basic_auth_users', user], 'a user name cannot be empty');
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw.http_server_config?.headers ?? {})) {
    if (value === undefined || value === '') continue; // blank: unset, as the toolkit documents
    const allowed = ALLOWED_HEADERS[name];
    if (allowed !== undefined && !allowed.includes(value)) {
      problem(['http_server_config', 'headers', name], `must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`);
      continue;
    }
    try {
      validateHeaderValue(name, value);
    } catch {
      problem(['http_server_config', 'headers', name], 'is not a valid header value (control characters are not allowed)');
      continue;
    }
    headers[name] = value;
  }

  const excluded = raw.flashback_exporter?.basic_auth_excluded_paths ?? [];
  if (excluded.length > 0 && users.size === 0) {
    problem(['flashback_exporter', 'basic_auth_excluded_paths'], 'has no effect without basic_auth_users');
  }

  if (problems.length > 0) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    return { ok: false, problems, stamps };
  }
  return {
    ok: true,
    config: {
      file,
      tls: tls ?? undefined,
      users,
      dummyHash: dummyHashFor([...users.values()]),
      headers,
      authExcludedPaths: new Set(excluded),
      stamps,
    },
  };
}

async function buildTls(
  t: RawTls,
  report: (path: YamlPath, message: string) => void,
  readPem: (key: string, path: string) => Promise<string | undefined>,
): Promise<TlsSettings | undefined> {
  const at = (key: string) => ['tls_server_config', key];
  let failed = false;
  const problem = (path: YamlPath, message: string) => {
    failed = true;
    report(path, message);
  };
  // Empty strings are unset, as Go's zero values are: a template may leave them blank.
  const set = (v: string | undefined): v is string => v !== undefined && v !== '';
  const enabled = set(t.cert) || set(t.cert_file) || set(t.key) || set(t.key_file) || set(t.client_ca) || set(t.client_ca_file) || t.client_auth_type !== undefined;
  if (!enabled) {
    // The toolkit would quietly serve plain HTTP here; a TLS setting without a certificate is a mistake.
    const stray = (['min_version', 'max_version', 'cipher_suites', 'curve_preferences', 'client_allowed_sans', 'prefer_server_cipher_suites'] as const).filter((k) => t[k] !== undefined);
    for (const key of stray) problem(at(key), 'has no effect without cert_file and key_file (or cert and key)');
    return undefined;
  }

  for (const [inline, path] of [['cert', 'cert_file'], ['key', 'key_file'], ['client_ca', 'client_ca_file']] as const) {
    if (set(t[inline]) && set(t[path])) problem(at(path), `set ${inline} or ${path}, not both`);
  }
  if (!set(t.cert) && !set(t.cert_file)) problem(at('cert_file'), 'missing one of cert or cert_file');
  if (!set(t.key) && !set(t.key_file)) problem(at('key_file'), 'missing one of key or key_file');

  const clientAuth: ClientAuthType = t.client_auth_type === 'RequireClientCert' ? 'RequireAnyClientCert' : (t.client_auth_type ?? 'NoClientCert');
  const caKey = set(t.client_ca_file) ? 'client_ca_file' : set(t.client_ca) ? 'client_ca' : undefined;
  if (caKey !== undefined && clientAuth === 'NoClientCert') {
    problem(at(caKey), 'client CAs are configured but client_auth_type is NoClientCert; set client_auth_type to RequireAndVerifyClientCert');
  }
  if ((clientAuth === 'VerifyClientCertIfGiven' || clientAuth === 'RequireAndVerifyClientCert') && caKey === undefined) {
    problem(at('client_auth_type'), `${clientAuth} needs client_ca_file (or client_ca) to verify client certificates against`);
  }
  if (t.client_allowed_sans !== undefined && clientAuth !== 'RequireAnyClientCert' && clientAuth !== 'RequireAndVerifyClientCert') {
    problem(at('client_allowed_sans'), 'requires client_auth_type to be one of RequireAnyClientCert or RequireAndVerifyClientCert');
  }

  const minVersion = TLS_VERSIONS[t.min_version ?? 'TLS12']!;
  const maxVersion = TLS_VERSIONS[t.max_version ?? 'TLS13']!;
  if (VERSION_ORDER.indexOf(minVersion) > VERSION_ORDER.indexOf(maxVersion)) {
    problem(at('min_version'), `${t.min_version ?? 'TLS12'} is newer than max_version ${t.max_version ?? 'TLS13'}`);
  }

  let ciphers: string | undefined;
  if (t.cipher_suites !== undefined) {
    const tls12 = [...new Set(t.cipher_suites.filter((c) => c in TLS12_CIPHERS).map((c) => TLS12_CIPHERS[c]!))];
    if (tls12.length === 0 && minVersion !== 'TLSv1.3') {
      problem(at('cipher_suites'), 'lists no TLS 1.2 cipher suite (TLS 1.3 suites cannot be chosen and are always enabled); list one or set min_version: TLS13');
    }
    ciphers = [...TLS13_CIPHERS, ...tls12].join(':');
  }
  const ecdhCurve = t.curve_preferences !== undefined && t.curve_preferences.length > 0 ? t.curve_preferences.map((c) => CURVES[c]!).join(':') : undefined;

  // The PEMs: read, parsed and matched now, so a bad file is named here, not at the first handshake.
  const certPem = set(t.cert_file) ? await readPem('cert_file', t.cert_file) : t.cert;
  const keyPem = set(t.key_file) ? await readPem('key_file', t.key_file) : t.key;
  const caPem = set(t.client_ca_file) ? await readPem('client_ca_file', t.client_ca_file) : set(t.client_ca) ? t.client_ca : undefined;
  const certKey = set(t.cert_file) ? 'cert_file' : 'cert';
  const keyKey = set(t.key_file) ? 'key_file' : 'key';

  let cert: X509Certificate | undefined;
  if (set(certPem)) {
    cert = parseCertificates(certPem, (m) => problem(at(certKey), m))[0];
  }
  let key: KeyObject | undefined;
  if (set(keyPem) && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyPem)) {
    problem(at(keyKey), 'holds no PEM private key (no "-----BEGIN PRIVATE KEY-----" block or the like)');
  } else if (set(keyPem)) {
    try {
      key = createPrivateKey(keyPem);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problem(at(keyKey), code === 'ERR_MISSING_PASSPHRASE' ? 'the private key is encrypted; give an unencrypted key' : `does not hold a PEM private key (${firstLine(err)})`);
    }
  }
  if (cert !== undefined && key !== undefined && !cert.checkPrivateKey(key)) {
    problem(at(keyKey), `the private key does not match the certificate in ${certKey}`);
  }
  if (caPem !== undefined && caKey !== undefined) parseCertificates(caPem, (m) => problem(at(caKey), m));

  if (failed || cert === undefined || key === undefined || certPem === undefined || keyPem === undefined) return undefined;
  const options: TlsSettings['options'] = {
    cert: certPem,
    key: keyPem,
    ...(caPem !== undefined ? { ca: caPem } : {}),
    minVersion,
    maxVersion,
    ...(ciphers !== undefined ? { ciphers } : {}),
    ...(ecdhCurve !== undefined ? { ecdhCurve } : {}),
    honorCipherOrder: t.prefer_server_cipher_suites ?? true,
    requestCert: clientAuth !== 'NoClientCert',
    // Only this mode lets OpenSSL refuse the handshake itself; the others are checked after it.
    rejectUnauthorized: clientAuth === 'RequireAndVerifyClientCert',
  };
  try {
    createSecureContext(options);
  } catch (err) {
    problem(['tls_server_config'], `OpenSSL refuses these settings: ${firstLine(err)}`);
    return undefined;
  }
  return { options, clientAuth, allowedSans: t.client_allowed_sans, certNotAfter: new Date(cert.validTo) };
}

/** Every certificate in a PEM text; reports a text that holds none, or a block that does not parse. */
function parseCertificates(pem: string, report: (message: string) => void): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    report('holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" block)');
    return [];
  }
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(block));
    } catch (err) {
      report(`certificate ${i + 1} does not parse (${firstLine(err)})`);
    }
  }
  return certs;
}

function describeReadError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return firstLine(err);
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0]!.trim();
}
