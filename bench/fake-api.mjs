// A stand-in for the Flashback API in its own process: answers GET /v2/stats/private-chat after a
// fixed latency (20 ms by default) with a realistic body (24 hourly points, the summary statistics), and counts
// requests, the most in flight at once and the TCP connections it accepted (keep-alive reuse).
import { createServer } from 'node:http';

const latencyMs = Number(process.argv[2] ?? 20);
let requests = 0;
let connections = 0;
let inFlight = 0;
let maxInFlight = 0;

function body(seed) {
  const end = 1_760_000_400;
  const series = Array.from({ length: 24 }, (_, i) => {
    const tokensIn = ((seed * 7919 + i * 104_729) % 900_000) + 1000;
    return { ts: end - 3600 * (24 - i), tokensIn, tokensOut: Math.floor(tokensIn / 3), requests: (seed + i) % 500, cachedTokens: tokensIn % 1000 };
  });
  const values = series.map((p) => p.tokensIn);
  const total = values.reduce((a, b) => a + b, 0);
  const sorted = [...values].sort((a, b) => a - b);
  return JSON.stringify({
    success: true,
    meta: { start: end - 86_400, end, scope: 'workspace', window: '24h', timeBucketSize: '1h' },
    summary: { total, avg: total / 24, stdDev: 1234.5 + (seed % 100) / 7, min: sorted[0], max: sorted[23], p10: sorted[2], p50: sorted[12], p90: sorted[21] },
    series,
  });
}

// Answers leave `latencyMs` after their request arrived, not later: a timer wakes up shortly
// before the first is due (timers fire late by up to a millisecond or so), then setImmediate
// turns until it is. Every answer has the same latency, so the queue is in order.
const due = [];
let waking = false;

function wake() {
  waking = false;
  const now = performance.now();
  while (due.length > 0 && due[0].at <= now) {
    const { res, text } = due.shift();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    inFlight--;
  }
  if (due.length === 0) return;
  waking = true;
  const wait = due[0].at - now;
  if (wait > 1.5) setTimeout(wake, wait - 1.5);
  else setImmediate(wake);
}

const server = createServer((req, res) => {
  requests++;
  inFlight++;
  maxInFlight = Math.max(maxInFlight, inFlight);
  due.push({ at: performance.now() + latencyMs, res, text: body(requests) });
  if (!waking) wake();
});
server.keepAliveTimeout = 65_000;
server.on('connection', () => connections++);

process.on('message', (msg) => {
  if (msg.cmd === 'stats') process.send({ id: msg.id, requests, connections, maxInFlight });
  else if (msg.cmd === 'reset') {
    requests = connections = maxInFlight = 0;
    process.send({ id: msg.id });
  } else if (msg.cmd === 'exit') {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  }
});
server.listen(0, '127.0.0.1', () => process.send({ ready: true, port: server.address().port }));
