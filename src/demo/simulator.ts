import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A running simulator of the Flashback API. */
export interface Simulator {
  readonly url: string;
  /** The bearer token it accepts; random per run. */
  readonly token: string;
  close(): Promise<void>;
}

const MODELS: Record<string, number> = { 'gpt-4o': 0.45, 'claude-sonnet-4': 0.35, 'gpt-4o-mini': 0.2 };
const USERS: Record<string, number> = { 'u-alice': 0.4, 'u-bob': 0.25, 'u-carol': 0.2, 'u-dave': 0.15 };
const SCOPE_VOLUME = { org: 400_000, workspace: 120_000, repo: 30_000 } as const;
const MAX_BUCKETS = 2_000;

/**
 * Serves GET /v2/stats/private-chat with the wire format of the API reference: bearer
 * auth, 400 errors with `success:false`, a summary, and series in no particular order.
 * Traffic follows a daily rhythm with noise and occasional spikes; it is a pure function
 * of (query, bucket), so every poll sees the same history and the newest bucket grows.
 */
export async function startSimulator(options: { now?: () => number; host?: string } = {}): Promise<Simulator> {
  const now = options.now ?? Date.now;
  const token = randomBytes(24).toString('base64url');
  const server = createServer((req, res) => handle(req, res, token, now()));
  await new Promise<void>((resolve) => server.listen(0, options.host ?? '127.0.0.1', resolve));
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    token,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function handle(req: IncomingMessage, res: ServerResponse, token: string, nowMs: number): void {
  const url = new URL(req.url ?? '/', 'http://simulator');
  if (url.pathname !== '/v2/stats/private-chat') return json(res, 404, { success: false, message: 'Not found' });
  if (req.method !== 'GET') return json(res, 405, { success: false, message: 'Method not allowed' });
  if (req.headers.authorization !== `Bearer ${token}`) return json(res, 401, { success: false, message: 'Unauthorized' });

  const q = url.searchParams;
  const scope = q.get('scope');
  if (scope !== 'org' && scope !== 'workspace' && scope !== 'repo') {
    return json(res, 400, { success: false, message: 'scope must be one of org, workspace, repo' });
  }
  const id = q.get('id');
  if (scope !== 'org' && !id) return json(res, 400, { success: false, message: `id is required when scope is ${scope}` });
  const window = seconds(q.get('window'));
  if (window === undefined) return json(res, 400, { success: false, message: 'window must look like 24h, 7d or 30d' });
  const bucketSize = q.has('timeBucketSize') ? seconds(q.get('timeBucketSize')) : 3600;
  if (bucketSize === undefined || bucketSize > window) return json(res, 400, { success: false, message: 'invalid timeBucketSize' });
  if (window / bucketSize > MAX_BUCKETS) return json(res, 400, { success: false, message: 'too many buckets for this window' });

  const end = Math.floor(nowMs / 1000);
  const start = end - window;
  const key = [scope, id, q.get('model'), q.get('userId'), q.get('apiKeyId'), q.get('aiLlmId')].join('|');
  const share = (q.has('model') ? (MODELS[q.get('model')!] ?? 0.02) : 1) * (q.has('userId') ? (USERS[q.get('userId')!] ?? 0.05) : 1);
  const series = [];
  for (let ts = Math.floor(start / bucketSize) * bucketSize; ts <= end; ts += bucketSize) {
    // The bucket still filling holds only the traffic so far.
    const filled = Math.min(1, (end - ts) / bucketSize);
    const perHour = SCOPE_VOLUME[scope] * share * rhythm(ts) * (0.85 + 0.3 * unit(key, ts, 'noise')) * spike(key, ts);
    const tokensIn = Math.round(perHour * (bucketSize / 3600) * filled);
    const tokensOut = Math.round(tokensIn * (0.3 + 0.2 * unit(key, ts, 'ratio')));
    const requests = Math.round(tokensIn / (900 + 600 * unit(key, ts, 'size')));
    series.push({ ts, tokensIn, tokensOut, requests, cachedTokens: Math.round(tokensIn * 0.2) });
  }
  // The API does not promise an order; neither does the simulator.
  series.sort((a, b) => unit(key, a.ts, 'order') - unit(key, b.ts, 'order'));
  json(res, 200, {
    success: true,
    meta: { start, end, scope, window: q.get('window'), timeBucketSize: q.get('timeBucketSize') ?? '1h' },
    summary: summarize(series.map((p) => p.tokensIn + p.tokensOut)),
    series,
  });
}

/** Busy afternoons, quiet nights (UTC), between 0.25 and 1.75. */
function rhythm(ts: number): number {
  const hour = (ts % 86_400) / 3600;
  return 1 + 0.75 * Math.sin(((hour - 8) / 24) * 2 * Math.PI);
}

/** About one bucket in forty is a 3–6× burst. */
function spike(key: string, ts: number): number {
  return unit(key, ts, 'spike') < 0.025 ? 3 + 3 * unit(key, ts, 'spike-size') : 1;
}

/** A deterministic number in [0, 1) for (key, ts, purpose). */
function unit(key: string, ts: number, purpose: string): number {
  return createHash('sha256').update(`${key}|${ts}|${purpose}`).digest().readUInt32BE(0) / 2 ** 32;
}

function summarize(values: number[]): Record<string, number> {
  if (values.length === 0) return { total: 0, avg: 0, stdDev: 0, min: 0, max: 0, p10: 0, p50: 0, p90: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const total = sorted.reduce((n, v) => n + v, 0);
  const avg = total / sorted.length;
  const stdDev = Math.sqrt(sorted.reduce((n, v) => n + (v - avg) ** 2, 0) / sorted.length);
  const pick = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  const round = (v: number) => Math.round(v * 100) / 100;
  return { total, avg: round(avg), stdDev: round(stdDev), min: sorted[0]!, max: sorted.at(-1)!, p10: pick(0.1), p50: pick(0.5), p90: pick(0.9) };
}

function seconds(text: string | null): number | undefined {
  const match = /^(\d+)([mhd])$/.exec(text ?? '');
  if (!match) return undefined;
  const n = Number(match[1]) * { m: 60, h: 3600, d: 86_400 }[match[2] as 'm' | 'h' | 'd'];
  return n > 0 ? n : undefined;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
