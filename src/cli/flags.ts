import { parseArgs } from 'node:util';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../log/logger.js';

/** The command line, parsed and checked. */
export interface Flags {
  readonly configFile: string;
  readonly configCheck: boolean;
  readonly listenAddress: string;
  readonly telemetryPath: string;
  readonly webConfigFile: string | undefined;
  readonly enableLifecycle: boolean;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly once: boolean;
  readonly demo: boolean;
  readonly shard: number;
  readonly totalShards: number;
  readonly version: boolean;
  readonly help: boolean;
}

// Prometheus-style flags (kingpin): dotted names, `--flag=value` or `--flag value`.
const SPEC = [
  { name: 'config.file', type: 'string', default: 'config.yaml', help: 'Flashback exporter configuration file.' },
  { name: 'config.check', type: 'boolean', help: 'Validate the configuration, print the poll units, series and API calls it implies, and exit. Needs no token.' },
  { name: 'web.listen-address', type: 'string', default: ':9877', help: 'Address on which to expose metrics and the web interface.' },
  { name: 'web.telemetry-path', type: 'string', default: '/metrics', help: 'Path under which to expose metrics.' },
  { name: 'web.config.file', type: 'string', help: 'Path to a web configuration file (exporter-toolkit format) enabling TLS or basic authentication.' },
  { name: 'web.enable-lifecycle', type: 'boolean', help: 'Enable reloading the configuration via HTTP POST to /-/reload.' },
  { name: 'log.level', type: 'string', default: 'info', help: `Only log messages with the given severity or above. One of: [${LOG_LEVELS.join(', ')}]` },
  { name: 'log.format', type: 'string', default: 'json', help: `Output format of log messages. One of: [${LOG_FORMATS.join(', ')}]` },
  { name: 'once', type: 'boolean', help: 'Poll every unit once, print the exposition text on stdout and exit; exits 1 if any poll failed.' },
  { name: 'demo', type: 'boolean', help: 'Run against a built-in simulator of the Flashback API with a built-in configuration.' },
  { name: 'shard', type: 'string', default: '0', help: 'The shard of the poll units this replica polls, from 0 to --total-shards minus 1; or a StatefulSet pod name, whose ordinal is the shard (--shard=$(POD_NAME)).' },
  { name: 'total-shards', type: 'string', default: '1', help: 'The number of replicas that share the poll units.' },
  { name: 'version', type: 'boolean', help: 'Show application version.' },
  { name: 'help', type: 'boolean', short: 'h', help: 'Show context-sensitive help.' },
] as const;

/** A bad command line; `message` is one line, to print above the usage. */
export class FlagError extends Error {
  readonly code = 'FLASHBACK_ERR_FLAGS';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FlagError';
  }
}

/** Parses argv (without node and the script); throws FlagError on anything it cannot accept. */
export function parseFlags(argv: readonly string[]): Flags {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(
      SPEC.map((f) => [f.name, { type: f.type, ...('short' in f ? { short: f.short } : {}), ...('default' in f ? { default: f.default } : {}) }]),
    );
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new FlagError(oneLine((err as Error).message), { cause: err });
  }
  const str = (name: string) => values[name] as string;
  const bool = (name: string) => values[name] === true;

  const logLevel = str('log.level');
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new FlagError(`invalid value "${logLevel}" for flag --log.level: must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const logFormat = str('log.format');
  if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw new FlagError(`invalid value "${logFormat}" for flag --log.format: must be one of ${LOG_FORMATS.join(', ')}`);
  }
  const telemetryPath = str('web.telemetry-path');
  if (!telemetryPath.startsWith('/')) throw new FlagError(`invalid value "${telemetryPath}" for flag --web.telemetry-path: must start with /`);
  const totalShards = wholeNumber('total-shards', str('total-shards'), 1);
  const shard = shardNumber(str('shard'));
  if (shard >= totalShards) throw new FlagError(`--shard=${shard} must be less than --total-shards=${totalShards}`);

  return {
    configFile: str('config.file'),
    configCheck: bool('config.check'),
    listenAddress: str('web.listen-address'),
    telemetryPath,
    webConfigFile: values['web.config.file'] as string | undefined,
    enableLifecycle: bool('web.enable-lifecycle'),
    logLevel: logLevel as LogLevel,
    logFormat: logFormat as LogFormat,
    once: bool('once'),
    demo: bool('demo'),
    shard,
    totalShards,
    version: bool('version'),
    help: bool('help'),
  };
}

function wholeNumber(flag: string, text: string, min: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min) throw new FlagError(`invalid value "${text}" for flag --${flag}: must be a whole number >= ${min}`);
  return n;
}

/** `2`, or a StatefulSet pod name such as `flashback-exporter-2`: its ordinal is the shard. */
function shardNumber(text: string): number {
  const ordinal = /^(?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?-)?(\d+)$/.exec(text)?.[2];
  if (ordinal === undefined) {
    throw new FlagError(`invalid value "${text}" for flag --shard: must be a whole number >= 0, or a StatefulSet pod name ending in -<ordinal>`);
  }
  return Number(ordinal);
}

function oneLine(message: string): string {
  // node:util's messages carry advice about "--" and positionals that does not apply here.
  return message.split('\n')[0]!.replace(/\. To specify a positional argument.*$/, '').trim();
}

/** The usage text, in the layout of kingpin's --help. */
export function usage(): string {
  const rows = SPEC.map((f) => {
    const short = 'short' in f ? `-${f.short}, ` : '    ';
    const arg = f.type === 'string' ? ('default' in f ? `="${f.default}"` : '=<value>') : '';
    return [`  ${short}--${f.name}${arg}`, f.help] as const;
  });
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return [
    'usage: flashback-exporter [<flags>]',
    '',
    'Prometheus exporter for Flashback private-chat LLM token and request statistics.',
    '',
    'Flags:',
    ...rows.map(([left, help]) => left.padEnd(width) + help),
    '',
  ].join('\n');
}
