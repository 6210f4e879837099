import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { MetricStore, Piece } from '../store/store.js';
import { CONTENT_TYPE } from '../store/exposition.js';
import { renderLanding } from './landing.js';
import { storedGzipMember } from './gzip.js';
import { TurnBudget } from '../loop/turns.js';

/** What a reload reports back to POST /-/reload. */
export type ReloadOutcome = { ok: true } | { ok: false; error: string };

/** What the HTTP handler serves from, passed in so a test can build it around any store. */
export interface HandlerDeps {
  readonly store: MetricStore;
  /** The exporter's own metrics (process, runtime, its counters), rendered per scrape. */
  readonly ownMetrics: () => Promise<string>;
  readonly telemetryPath: string;
  readonly version: string;
  readonly log: Logger;
  readonly enableLifecycle: boolean;
  readonly reload: () => Promise<ReloadOutcome>;
  readonly now?: () => number;
  /** The turn's share of chunked work, shared with the store's rebuilds; a handler's own when not given. */
  readonly turns?: TurnBudget;
}

/** The exposition: the store's pre-rendered series, then the exporter's own few. */
export async function renderMetrics(store: MetricStore, ownMetrics: () => Promise<string>): Promise<Buffer[]> {
  const [snapshot, own] = await Promise.all([store.snapshot(), ownMetrics()]);
  return [...snapshot.chunks(), Buffer.from(own)];
}

/**
 * The request handler for every endpoint. /metrics only reads the store, so a scrape
 * never waits for the Flashback API, however slow it is.
 */
export function createHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const now = deps.now ?? Date.now;
  const turns = deps.turns ?? new TurnBudget();
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void> | void> = {
    [deps.telemetryPath]: (req, res) => serveMetrics(deps, turns, req, res),
    '/-/healthy': (_req, res) => text(res, 200, 'Flashback Exporter is Healthy.\n'),
    '/-/ready': (_req, res) => {
      if (deps.store.ready) return text(res, 200, 'Flashback Exporter is Ready.\n');
      const waiting = deps.store.statuses().filter((u) => u.lastAttemptAt === undefined).length;
      text(res, 503, `Flashback Exporter is not ready: ${waiting} of ${deps.store.unitCount} poll units have not finished their first poll.\n`);
    },
    '/-/reload': async (req, res) => {
      if (req.method !== 'POST' && req.method !== 'PUT') {
        res.setHeader('Allow', 'POST, PUT');
        return text(res, 405, 'Only POST or PUT requests allowed.\n');
      }
      if (!deps.enableLifecycle) return text(res, 403, 'Lifecycle API is not enabled; start with --web.enable-lifecycle.\n');
      const outcome = await deps.reload();
      if (outcome.ok) text(res, 200, 'Configuration reloaded.\n');
      else text(res, 500, `Failed to reload the configuration:\n${outcome.error}\n`);
    },
  };
  if (deps.telemetryPath !== '/') {
    routes['/'] = (req, res) => {
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(req.method === 'HEAD' ? undefined : renderLanding({ version: deps.version, telemetryPath: deps.telemetryPath, units: deps.store.statuses(), now: now() }));
    };
  }

  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const route = routes[path];
    if (route === undefined) return text(res, 404, 'Not Found\n');
    if (path !== '/-/reload' && req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return text(res, 405, 'Method Not Allowed\n');
    }
    Promise.resolve(route(req, res)).catch((err: unknown) => {
      deps.log.error({ err: (err as Error)?.message, path }, 'request failed');
      if (!res.headersSent) text(res, 500, 'Internal Server Error\n');
      else res.destroy();
    });
  };
}

async function serveMetrics(deps: HandlerDeps, turns: TurnBudget, req: IncomingMessage, res: ServerResponse): Promise<void> {
  res.setHeader('Content-Type', CONTENT_TYPE);
  res.setHeader('Vary', 'Accept-Encoding');
  const gzip = acceptsGzip(req.headers['accept-encoding']);
  if (gzip) res.setHeader('Content-Encoding', 'gzip');
  const snapshot = await deps.store.snapshot();
  if (req.method === 'HEAD') return void res.end();
  res.writeHead(200);
  // The store's text goes first, as it is kept: in pieces of up to 256 KiB in Buffers reused
  // from scrape to scrape (plain text rendered into them as it goes, label sets in front of
  // line tails; gzip members copied together), each written when the socket takes it, and the
  // event loop gets a turn once the turn's share of work is used, by this scrape or others. The store keeps gzip members, which a gzip file may
  // hold several of (RFC 1952 §2.2) and every reader, Prometheus included, decodes as one
  // stream: nothing is compressed on a scrape.
  // The exporter's own few lines are taken once the socket has all it will take for now: their
  // /proc reads and system calls then run while the client reads, instead of in front of its
  // first byte or between pieces. Their length is not known up front, so the body is chunked,
  // as promhttp's are.
  let own: Promise<string> | undefined;
  const takeOwn = () => (own ??= deps.ownMetrics());
  await send(res, gzip ? snapshot.gzipPieces() : snapshot.pieces(), turns, takeOwn);
  if (res.destroyed) return;
  const text = Buffer.from(await takeOwn());
  // A gzip scrape gets them as a member of their own, stored rather than compressed: a few
  // KiB that change every scrape.
  res.end(gzip ? storedGzipMember(text) : text);
}

/** Writes pieces as the socket takes them, calling `whileWaiting` before it first waits for one to drain. */
async function send(res: ServerResponse, pieces: Iterable<Piece>, turns: TurnBudget, whileWaiting: () => void): Promise<void> {
  for (const piece of pieces) {
    if (res.destroyed) {
      piece.done();
      return;
    }
    if (!res.write(piece.text, piece.done)) {
      whileWaiting();
      await drained(res);
    }
    if (turns.spent()) await turns.next();
  }
}

/** Resolves when the response can take more, or has been closed (the client left). */
export function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  return header.split(',').some((part) => {
    const [coding, ...params] = part.trim().split(';');
    if (coding?.trim().toLowerCase() !== 'gzip') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** `:9877`, `127.0.0.1:9877`, `[::1]:9877` → host (undefined: every interface) and port. */
export function parseListenAddress(address: string): { host: string | undefined; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

/** Starts an HTTP server on an address; rejects when it cannot listen (port in use). */
export function listen(handler: (req: IncomingMessage, res: ServerResponse) => void, address: { host: string | undefined; port: number }): Promise<Server> {
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 60_000 }, handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
