import { pino, stdTimeFunctions, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

/** The values of --log.level, as the Go exporters' promslog takes them. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** The values of --log.format: JSON lines for collectors, or coloured lines for a terminal. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** What main.ts reads from the flags; tests pass a destination to read the lines back. */
export interface LoggerOptions {
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** Where lines go; stderr by default, so stdout stays clean for --once. */
  readonly destination?: DestinationStream;
}

/**
 * The root logger: one JSON object per line with a level name and an ISO time, as the Go
 * exporters log with --log.format=json. Anything that looks like a credential is redacted
 * as a second line of defence; the token is never passed to the logger in the first place.
 */
export function createLogger(options: LoggerOptions): Logger {
  const destination =
    options.destination ??
    (options.format === 'pretty'
      ? pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, translateTime: 'SYS:standard', ignore: 'pid,hostname' })
      : pino.destination({ dest: 2, sync: true }));
  return pino(
    {
      level: options.level,
      base: undefined,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['token', 'authorization', '*.authorization', 'headers.authorization', '*.token'], censor: '[redacted]' },
    },
    destination,
  );
}
