import { request as httpRequest, Agent as HttpAgent, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { SecureVersion, TLSSocket } from 'node:tls';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createLogger } from '../../src/log/logger.js';

/** What a client saw: the answer, and for HTTPS the connection it came over. */
export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** `TLSv1.3`; undefined over plain HTTP. */
  readonly protocol: string | undefined;
  /** The negotiated suite's IANA name. */
  readonly cipher: string | undefined;
  /** The common name of the certificate the server presented. */
  readonly serverCN: string | undefined;
  /** Whether the TLS session was resumed from an earlier connection. */
  readonly resumed: boolean | undefined;
}

export interface ClientOptions {
  readonly path?: string;
  readonly method?: string;
  /** Sent as `Authorization: Basic …`. */
  readonly auth?: readonly [user: string, password: string];
  readonly headers?: Record<string, string>;
  /** PEM text: the CA the client trusts, its certificate and key. */
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly minVersion?: SecureVersion;
  readonly maxVersion?: SecureVersion;
  readonly ciphers?: string;
  readonly ecdhCurve?: string;
  /** Reuse connections; by default each request makes a new connection, so a new handshake. */
  readonly agent?: HttpAgent | HttpsAgent;
}

/** One request over a real connection, through node's HTTP(S) client. */
export function get(base: string, options: ClientOptions = {}): Promise<Answer> {
  const url = new URL(options.path ?? '/metrics', base);
  const https = url.protocol === 'https:';
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth) headers.authorization = `Basic ${Buffer.from(`${options.auth[0]}:${options.auth[1]}`).toString('base64')}`;
  const tls = https
    ? {
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        ...(options.minVersion ? { minVersion: options.minVersion } : {}),
        ...(options.maxVersion ? { maxVersion: options.maxVersion } : {}),
        ...(options.ciphers ? { ciphers: options.ciphers } : {}),
        ...(options.ecdhCurve ? { ecdhCurve: options.ecdhCurve } : {}),
      }
    : {};
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(url, { method: options.method ?? 'GET', headers, agent: options.agent ?? false, ...tls }, (res) => {
      const socket = res.socket as TLSSocket;
      const secure = https && typeof socket.getProtocol === 'function';
      const seen = {
        protocol: secure ? (socket.getProtocol() ?? undefined) : undefined,
        cipher: secure ? socket.getCipher()?.standardName : undefined,
        serverCN: secure ? (socket.getPeerCertificate().subject?.CN as string | undefined) : undefined,
        resumed: secure ? socket.isSessionReused() : undefined,
      };
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString(), ...seen }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A logger whose lines a test reads back, parsed, and whose raw text it can search. */
export function capturedLogger(): { log: Logger; lines: Record<string, unknown>[]; raw: () => string } {
  const lines: Record<string, unknown>[] = [];
  let raw = '';
  const log = createLogger({
    level: 'debug',
    format: 'json',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        raw += chunk.toString();
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  });
  return { log, lines, raw: () => raw };
}
