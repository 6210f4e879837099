import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A throwaway public-key infrastructure in a temp folder: two CAs and the certificates they sign. */
export interface Pki {
  readonly dir: string;
  /** The absolute path of a file in the folder. */
  path(name: string): string;
  /** The text of a file in the folder. */
  read(name: string): string;
}

const OPENSSL = '/usr/bin/openssl';

function openssl(dir: string, args: string[]): void {
  execFileSync(OPENSSL, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function key(dir: string, name: string): void {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
}

function ca(dir: string, name: string, subject: string): void {
  key(dir, name);
  openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-out', `${name}.crt`, '-days', '30', '-subj', subject,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

/** A leaf certificate `name` signed by CA `issuer`, with the given SANs and extended key usage. */
function leaf(dir: string, name: string, issuer: string, subject: string, sans: string, usage: 'serverAuth' | 'clientAuth'): void {
  key(dir, name);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${sans}\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.crt`, '-CAkey', `${issuer}.key`, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '30', '-extfile', `${name}.ext`]);
}

/**
 * Makes, with the openssl CLI:
 * - `ca` and `other-ca`: two unrelated CAs;
 * - `server` and `server2`: certificates for 127.0.0.1/localhost signed by `ca` (two, to see a rotation);
 * - `client`: a client certificate from `ca` with SANs DNS:prometheus.example and URI:spiffe://test/prometheus;
 * - `client-other`: a client certificate from `other-ca`;
 * - `client-self`: a self-signed client certificate.
 * Each as NAME.crt and NAME.key.
 */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'flashback-pki-'));
  ca(dir, 'ca', '/CN=flashback test CA');
  ca(dir, 'other-ca', '/CN=some other CA');
  leaf(dir, 'server', 'ca', '/CN=flashback-exporter one', 'IP:127.0.0.1,DNS:localhost', 'serverAuth');
  leaf(dir, 'server2', 'ca', '/CN=flashback-exporter two', 'IP:127.0.0.1,DNS:localhost', 'serverAuth');
  leaf(dir, 'client', 'ca', '/CN=prometheus', 'DNS:prometheus.example,URI:spiffe://test/prometheus', 'clientAuth');
  leaf(dir, 'client-other', 'other-ca', '/CN=prometheus elsewhere', 'DNS:prometheus.example', 'clientAuth');
  key(dir, 'client-self');
  openssl(dir, ['req', '-x509', '-new', '-key', 'client-self.key', '-out', 'client-self.crt', '-days', '30', '-subj', '/CN=self-signed client',
    '-addext', 'subjectAltName=DNS:prometheus.example']);
  return { dir, path: (name) => join(dir, name), read: (name) => readFileSync(join(dir, name), 'utf8') };
}
