import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { parseConfig, type LoadResult } from '../../src/config/load.js';
import { createExporter, type Exporter, type ExporterOptions } from '../../src/exporter/exporter.js';
import { listen } from '../../src/http/server.js';
import { createLogger } from '../../src/log/logger.js';
import { staticTokenSource } from '../../src/api/token.js';

/** An exporter built in-process and serving on a loopback port. */
export interface RunningExporter {
  readonly exporter: Exporter;
  readonly url: string;
  /** Every log line, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Replaces the YAML a reload reads. */
  setYaml(yaml: string): void;
  close(): Promise<void>;
}

export const TEST_TOKEN = 'test-token-7f3a9c';

/** Builds the whole exporter from YAML, as main does, with a token and a log that tests read. */
export async function startExporter(
  yaml: string,
  options: Partial<Omit<ExporterOptions, 'config' | 'log' | 'loadConfig'>> & { start?: boolean } = {},
): Promise<RunningExporter> {
  let text = yaml;
  const load = (): LoadResult => parseConfig(text, 'test.yaml');
  const first = load();
  if (!first.ok) throw new Error(`bad test config: ${JSON.stringify(first.problems)}`);
  const logs: Record<string, unknown>[] = [];
  const log = createLogger({
    level: 'debug',
    format: 'json',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  });
  const exporter = await createExporter({
    version: '0.0.0-test',
    tokenSource: async () => staticTokenSource(TEST_TOKEN),
    processMetrics: false,
    ...options,
    config: first.config,
    log,
    loadConfig: async () => load(),
  });
  const server: Server = await listen(exporter.handler, { host: '127.0.0.1', port: 0 });
  if (options.start !== false) await exporter.start();
  return {
    exporter,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    logs,
    setYaml: (next) => {
      text = next;
    },
    close: async () => {
      await exporter.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls `check` until it returns true, failing after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The sample lines of an exposition, without comments, sorted: for order-free comparison. */
export function sampleLines(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .sort();
}

/** The value of the one sample of `name` whose labels include every given pair. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches = text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matches.length === 0 ? undefined : Number(matches[0]!.slice(matches[0]!.lastIndexOf(' ') + 1));
}
