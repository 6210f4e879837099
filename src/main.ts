#!/usr/bin/env node
import type { Logger } from 'pino';
import { FlagError, parseFlags, usage, type Flags } from './cli/flags.js';
import { describePlan } from './cli/check.js';
import { formatProblem, loadConfigFile, parseConfig, type LoadResult } from './config/load.js';
import type { Config } from './config/config.js';
import { fileTokenSource, staticTokenSource, type TokenSource } from './api/token.js';
import { startSimulator, type Simulator } from './demo/simulator.js';
import { demoConfigYaml } from './demo/config.js';
import { createExporter, type Exporter } from './exporter/exporter.js';
import { parseListenAddress, renderMetrics } from './http/server.js';
import { loadWebConfig, type WebConfig } from './http/web-config.js';
import { startWebServer, type WebServer } from './http/web-server.js';
import { createLogger } from './log/logger.js';
import { lowerHelperThreads } from './threads/priority.js';
import { packageVersion } from './version.js';

// Shutdown must finish within this; Kubernetes' default grace period is 30 s, ours 5 s.
const SHUTDOWN_TIMEOUT_MS = 4_000;

async function main(argv: readonly string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    process.stderr.write(`flashback-exporter: error: ${err.message}\n\n${usage()}`);
    return 1;
  }
  const version = packageVersion();
  if (flags.help) return void process.stdout.write(usage()), 0;
  if (flags.version) return void process.stdout.write(`flashback-exporter, version ${version} (node: ${process.version})\n`), 0;
  const address = parseListenAddress(flags.listenAddress);
  if (address === undefined) {
    process.stderr.write(`flashback-exporter: error: invalid value "${flags.listenAddress}" for flag --web.listen-address: want host:port\n\n${usage()}`);
    return 1;
  }

  // From here on a signal ends the process cleanly, whatever stage startup has reached.
  const stopping = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const log = createLogger({ level: flags.logLevel, format: flags.logFormat });
  // SIGHUP's default action ends the process; until there is a config to reload, ignore it.
  const ignoreHup = () => log.warn('SIGHUP received before startup finished; ignored');
  process.on('SIGHUP', ignoreHup);
  const simulator = flags.demo ? await startSimulator() : undefined;
  try {
    return await run(flags, address, version, log, simulator, stopping, () => process.off('SIGHUP', ignoreHup));
  } finally {
    await simulator?.close();
  }
}

async function run(
  flags: Flags,
  address: { host: string | undefined; port: number },
  version: string,
  log: Logger,
  simulator: Simulator | undefined,
  stopping: Promise<string>,
  startupDone: () => void,
): Promise<number> {
  const loadConfig = (): Promise<LoadResult> =>
    simulator ? Promise.resolve(parseConfig(demoConfigYaml(simulator.url), '<demo>')) : loadConfigFile(flags.configFile);
  const loaded = await loadConfig();
  if (!loaded.ok) {
    process.stderr.write(`flashback-exporter: invalid configuration:\n${loaded.problems.map((p) => `  ${formatProblem(p)}\n`).join('')}`);
    return 1;
  }
  const sharding = { shard: flags.shard, totalShards: flags.totalShards };
  if (flags.configCheck) {
    process.stdout.write(describePlan(loaded.config, simulator ? '<demo>' : flags.configFile, sharding));
    return 0;
  }

  // Checked before anything starts, like the config: a server that would refuse every
  // scrape, or serve without the TLS or auth the file asks for, must not start at all.
  let webConfig: WebConfig | undefined;
  if (flags.webConfigFile && !flags.once) {
    const web = await loadWebConfig(flags.webConfigFile);
    if (!web.ok) {
      process.stderr.write(`flashback-exporter: invalid web configuration:\n${web.problems.map((p) => `  ${formatProblem(p)}\n`).join('')}`);
      return 1;
    }
    webConfig = web.config;
  }

  // Scrapes and answers come before V8's recompiling (see threads/priority.ts); --once serves none.
  if (!flags.once) {
    const threads = lowerHelperThreads();
    for (const err of threads.failed) log.warn({ err: err.message, code: err.code }, 'cannot lower the priority of a V8 helper thread');
    if (threads.lowered.length > 0) log.debug({ threads: threads.lowered.length }, "lowered the priority of V8's helper threads below the event loop's");
  }

  let exporter: Exporter;
  try {
    exporter = await createExporter({
      config: loaded.config,
      log,
      version,
      loadConfig,
      tokenSource: (api) => tokenSource(api, simulator, log),
      sharding,
      telemetryPath: flags.telemetryPath,
      enableLifecycle: flags.enableLifecycle,
      processMetrics: !flags.once,
    });
  } catch (err) {
    log.error({ err: (err as Error).message }, 'cannot start');
    return 1;
  }

  if (flags.once) {
    const ok = await Promise.race([exporter.pollOnce(), stopping.then(() => false)]);
    const chunks = await renderMetrics(exporter.store, exporter.telemetry.render);
    await new Promise<void>((resolve) => process.stdout.write(Buffer.concat(chunks), () => resolve()));
    await exporter.stop();
    return ok ? 0 : 1;
  }

  process.on('SIGHUP', () => {
    log.info('SIGHUP received, reloading the configuration');
    void exporter.reload();
  });
  startupDone();

  let server: WebServer;
  try {
    server = await startWebServer({ handler: exporter.handler, address, log, webConfig });
  } catch (err) {
    log.error({ err: (err as Error).message, address: flags.listenAddress }, 'cannot listen');
    await exporter.stop();
    return 1;
  }
  const bound = server.address;
  log.info(
    {
      address: `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`,
      tls: server.tls,
      basic_auth: (webConfig?.users.size ?? 0) > 0,
      telemetry_path: flags.telemetryPath,
      version,
      demo: flags.demo,
    },
    'listening',
  );
  await exporter.start();

  log.info({ signal: await stopping }, 'shutting down');
  // Whatever hangs (a stuck request, a slow client), the process still ends in time.
  const deadline = new Promise<void>((resolve) => setTimeout(resolve, SHUTDOWN_TIMEOUT_MS).unref());
  void server.close();
  const stopped = exporter.stop().then(
    () => true,
    (err: unknown) => log.error({ err: (err as Error).message }, 'error during shutdown'),
  );
  if ((await Promise.race([stopped, deadline])) !== true) log.warn('shutdown did not finish in time; exiting anyway');
  return 0;
}

/** The token for an api section: the demo's own, the token file, or FLASHBACK_TOKEN. */
async function tokenSource(api: Config['api'], simulator: Simulator | undefined, log: Logger): Promise<TokenSource> {
  if (simulator) return staticTokenSource(simulator.token);
  if (api.tokenFile !== undefined) {
    try {
      return await fileTokenSource(api.tokenFile, {
        onError: (err) => log.warn({ err: err.message, token_file: api.tokenFile }, 'cannot read api.tokenFile; keeping the last token'),
      });
    } catch (err) {
      // Someone who exported FLASHBACK_TOKEN expects it to be used: say why it was not.
      const ignored = process.env.FLASHBACK_TOKEN?.trim() ? ' (FLASHBACK_TOKEN is set, but api.tokenFile takes precedence over it)' : '';
      throw new Error(`cannot use api.tokenFile: ${(err as Error).message}${ignored}`, { cause: err });
    }
  }
  const env = process.env.FLASHBACK_TOKEN?.trim();
  if (env) return staticTokenSource(env, 'FLASHBACK_TOKEN');
  throw new Error('no API token: set api.tokenFile in the configuration or the FLASHBACK_TOKEN environment variable');
}

process.on('unhandledRejection', (reason) => {
  // A bug, not an upstream failure: report it loudly but keep serving the last good data.
  process.stderr.write(`${JSON.stringify({ level: 'error', time: new Date().toISOString(), msg: 'unhandled rejection', err: String((reason as Error)?.stack ?? reason) })}\n`);
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`flashback-exporter: fatal: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(1);
  },
);
