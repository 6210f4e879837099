import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, isIP, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { formatProblem } from '../config/yaml.js';
import { BasicAuthenticator } from './basic-auth.js';
import { listen } from './server.js';
import { changed, loadWebConfig, type FileStamp, type TlsSettings, type WebConfig } from './web-config.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

// The same limits as listen(): Prometheus keeps connections alive between scrapes.
const SERVER_OPTIONS = { keepAliveTimeout: 65_000, requestTimeout: 60_000 };
// A client that connects and never finishes the handshake is dropped after this.
const HANDSHAKE_TIMEOUT_MS = 10_000;
const WARN_EXPIRY_MS = 7 * 86_400_000;

/** What startWebServer needs; the logger and clock are passed in, as everywhere. */
export interface WebServerOptions {
  readonly handler: Handler;
  readonly address: { host: string | undefined; port: number };
  readonly log: Logger;
  /** From loadWebConfig at startup (so known good); absent: plain HTTP, no auth, as before. */
  readonly webConfig?: WebConfig | undefined;
  readonly authenticator?: BasicAuthenticator;
  readonly now?: () => number;
}

/** The server for /metrics and the rest, as the web config file says to serve them. */
export interface WebServer {
  readonly address: AddressInfo;
  readonly tls: boolean;
  /** Stops accepting connections and ends every open one; resolves once the port is free. */
  close(): Promise<void>;
}

/**
 * Starts serving `handler` on an address: plain HTTP without a web config; with one, HTTPS
 * when it has tls_server_config, basic auth when it has users, and its headers on every
 * answer. The file (and every certificate file it names) is checked for changes before each
 * TLS handshake and each request, as the toolkit re-reads it, so certificates and users
 * rotate without a restart; a broken edit keeps the last good config and logs every problem.
 */
export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const { handler, address, log } = options;
  if (options.webConfig === undefined) {
    const server = await listen(handler, address);
    return { address: server.address() as AddressInfo, tls: false, close: () => closeServer(server) };
  }

  const now = options.now ?? Date.now;
  const auth = options.authenticator ?? new BasicAuthenticator();
  let inner: HttpServer | HttpsServer;
  const live = new LiveWebConfig(options.webConfig, log, (next) => {
    warnOnExpiry(next.tls, now(), log);
    if (next.tls === undefined) return;
    const https = inner as HttpsServer & { requestCert: boolean; rejectUnauthorized: boolean };
    // A new context also has new session ticket keys: no session resumes under the old policy.
    https.setSecureContext(next.tls.options);
    // setSecureContext leaves these alone; each new connection reads them from the server.
    https.requestCert = next.tls.options.requestCert;
    https.rejectUnauthorized = next.tls.options.rejectUnauthorized;
  });
  warnOnExpiry(options.webConfig.tls, now(), log);

  const gate: Handler = (req, res) => {
    live
      .refresh()
      .then(async () => {
        const config = live.current;
        for (const [name, value] of Object.entries(config.headers)) res.setHeader(name, value);
        const path = (req.url ?? '/').split('?', 1)[0]!;
        if (config.users.size === 0 || config.authExcludedPaths.has(path)) return handler(req, res);
        if (await auth.verify(req.headers.authorization, config.users, config.dummyHash)) return handler(req, res);
        const body = 'Unauthorized\n';
        res.writeHead(401, {
          'WWW-Authenticate': 'Basic realm="flashback-exporter"',
          'Content-Type': 'text/plain; charset=utf-8',
          'Content-Length': Buffer.byteLength(body),
        });
        res.end(body);
      })
      .catch((err: unknown) => {
        log.error({ err: (err as Error)?.message }, 'request failed before reaching its handler');
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Internal Server Error\n');
        else res.destroy();
      });
  };

  const tls = options.webConfig.tls;
  if (tls === undefined) {
    // Plain HTTP: nothing happens per connection, so the per-request check is enough.
    inner = createHttpServer(SERVER_OPTIONS, gate);
    await listenOn(inner, address);
    return { address: inner.address() as AddressInfo, tls: false, close: () => closeServer(inner) };
  }

  const https = createHttpsServer({ ...SERVER_OPTIONS, ...tls.options, handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, gate);
  inner = https;
  // Runs before the HTTP layer sees the connection: what OpenSSL cannot check itself.
  https.prependListener('secureConnection', (socket: TLSSocket) => {
    const refusal = clientCertRefusal(socket, live.current.tls);
    if (refusal === undefined) return;
    log.debug({ remote: socket.remoteAddress, reason: refusal }, 'TLS client refused');
    socket.destroy();
  });
  https.on('tlsClientError', (err, socket) => log.debug({ remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed'));

  // Sockets are accepted here, held unread until the config is known current, then handed to
  // the HTTPS server: every handshake uses the certificate on disk at that moment, as Go's
  // GetConfigForClient gives the toolkit. (SNICallback would not do: clients that dial an IP,
  // as Prometheus usually does, send no server name, so it is never called.)
  const sockets = new Set<Socket>();
  const front = createNetServer({ pauseOnConnect: true }, (socket: Socket) => {
    // Tracked so close() also ends the sockets still waiting for the config check, which the
    // HTTPS server has not seen yet and so cannot close.
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const early = () => socket.destroy();
    socket.on('error', early);
    live
      .refresh()
      .catch((err: unknown) => log.error({ err: (err as Error)?.message }, 'cannot check the web config file'))
      .finally(() => {
        socket.off('error', early);
        if (!socket.destroyed) https.emit('connection', socket);
      });
  });
  await listenOn(front, address);
  // The HTTPS server never listens itself; this starts its connection tracking (request and
  // header timeouts, closeAllConnections), which node starts on 'listening'.
  https.emit('listening');
  return {
    address: front.address() as AddressInfo,
    tls: true,
    close: async () => {
      const closed = closeServer(front);
      https.close();
      https.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/**
 * The web config in force, re-checked on demand: when any file it was built from changed, it
 * is loaded again; a good one replaces it, a bad one is logged (once per change) and ignored.
 */
class LiveWebConfig {
  #current: WebConfig;
  #failedStamps: readonly FileStamp[] | undefined;
  #checking: Promise<void> | undefined;
  readonly #log: Logger;
  readonly #onChange: (next: WebConfig) => void;

  constructor(initial: WebConfig, log: Logger, onChange: (next: WebConfig) => void) {
    this.#current = initial;
    this.#log = log;
    this.#onChange = onChange;
  }

  get current(): WebConfig {
    return this.#current;
  }

  /** Brings `current` up to date with the files; concurrent callers share one check. */
  refresh(): Promise<void> {
    this.#checking ??= this.#check().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #check(): Promise<void> {
    // After a failed load, compare against what failed, so one bad edit is logged once.
    if (!(await changed(this.#failedStamps ?? this.#current.stamps))) return;
    const file = this.#current.file;
    const result = await loadWebConfig(file);
    let problems = result.ok ? [] : result.problems.map(formatProblem);
    if (result.ok && (result.config.tls === undefined) !== (this.#current.tls === undefined)) {
      problems = [`${file} tls_server_config: switching between HTTP and HTTPS needs a restart`];
    }
    if (!result.ok || problems.length > 0) {
      this.#failedStamps = result.ok ? result.config.stamps : result.stamps;
      for (const problem of problems) this.#log.error({ problem }, 'web config reload failed; keeping the last good web config');
      return;
    }
    this.#failedStamps = undefined;
    this.#onChange(result.config);
    this.#current = result.config;
    this.#log.info({ file, tls: result.config.tls !== undefined, basic_auth_users: result.config.users.size }, 'web config reloaded');
  }
}

/** Why a TLS client must be turned away after its handshake, by the policies OpenSSL lacks. */
function clientCertRefusal(socket: TLSSocket, tls: TlsSettings | undefined): string | undefined {
  if (tls === undefined || tls.clientAuth === 'NoClientCert' || tls.clientAuth === 'RequestClientCert') return undefined;
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) {
    return tls.clientAuth === 'VerifyClientCertIfGiven' ? undefined : 'no client certificate';
  }
  if ((tls.clientAuth === 'VerifyClientCertIfGiven' || tls.clientAuth === 'RequireAndVerifyClientCert') && !socket.authorized) {
    return `client certificate not verified: ${String(socket.authorizationError)}`;
  }
  if (tls.allowedSans !== undefined) {
    const sans = subjectAltNames(cert.subjectAltName);
    const allowed = tls.allowedSans.some((want) => (isIP(want) ? cert.checkIP(want) !== undefined : sans.includes(want)));
    if (!allowed) return 'client certificate has none of client_allowed_sans';
  }
  return undefined;
}

/** The values of a certificate's DNS, email and URI names, from node's `subjectAltName` text. */
function subjectAltNames(text: string | undefined): string[] {
  if (text === undefined) return [];
  const names: string[] = [];
  // node writes `DNS:a.example, URI:spiffe://x, email:"a,b"@c` and JSON-quotes awkward values.
  for (const m of text.matchAll(/(DNS|email|URI):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    const value = m[2]!;
    names.push(value.startsWith('"') ? (JSON.parse(value) as string) : value);
  }
  return names;
}

function warnOnExpiry(tls: TlsSettings | undefined, now: number, log: Logger): void {
  if (tls === undefined) return;
  const left = tls.certNotAfter.getTime() - now;
  if (left < 0) log.warn({ not_after: tls.certNotAfter.toISOString() }, 'the TLS server certificate has expired');
  else if (left < WARN_EXPIRY_MS) log.warn({ not_after: tls.certNotAfter.toISOString() }, 'the TLS server certificate expires within 7 days');
}

function listenOn(server: NetServer, address: { host: string | undefined; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: HttpServer | NetServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    if ('closeAllConnections' in server) server.closeAllConnections();
  });
}
