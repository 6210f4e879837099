// The ceiling for poll throughput on this machine: the same requests to the same fake API, made by
// a bare undici Agent (keep-alive, `connections: concurrency`) behind the exporter's Semaphore,
// each answer read and parsed, and nothing else: no scheduler, no validation, no store.
import { Agent } from 'undici';
import { Semaphore } from '../dist/api/limiter.js';

const [apiUrl, unitsArg, concurrencyArg] = process.argv.slice(2);
const units = Number(unitsArg);
const concurrency = Number(concurrencyArg);
const agent = new Agent({ connections: concurrency, keepAliveTimeout: 30_000 });
const slots = new Semaphore(concurrency);
const origin = new URL(apiUrl).origin;

process.on('message', async (msg) => {
  if (msg.cmd === 'start') {
    const started = performance.now();
    let failed = 0;
    await Promise.all(
      Array.from({ length: units }, async (_, i) => {
        await slots.acquire();
        try {
          const res = await agent.request({ origin, path: `/v2/stats/private-chat?scope=workspace&id=ws&window=24h&userId=u-${i}`, method: 'GET' });
          const body = await res.body.text();
          if (res.statusCode !== 200 || JSON.parse(body).success !== true) failed++;
        } catch {
          failed++;
        } finally {
          slots.release();
        }
      }),
    );
    process.send({ id: msg.id, units, failed, elapsedMs: performance.now() - started });
  } else if (msg.cmd === 'exit') {
    await agent.close();
    process.exit(0);
  }
});
process.send({ ready: true });
