import { readFile } from 'node:fs/promises';

/**
 * Supplies the API token for each request: a string when one is at hand, so the request
 * can leave without waiting a turn of the event loop, or a promise while it is read.
 */
export type TokenSource = () => string | Promise<string>;

export interface FileTokenOptions {
  /** Called when a re-read fails or finds the file empty; the last good token is kept. */
  readonly onError: (err: Error) => void;
  /** How long a read token is used before the file is read again. */
  readonly refreshMs?: number;
  readonly now?: () => number;
}

// A rotated token is in use within a second. Kubernetes itself takes up to a minute to
// update a mounted Secret, so reading more often gains nothing, and at thousands of polls
// a minute a read per request would be thousands of trips through libuv's thread pool.
const DEFAULT_REFRESH_MS = 1_000;

/**
 * Reads the token file again once the last read is `refreshMs` old, so a rotated secret
 * (a Kubernetes Secret volume, Vault agent) takes effect without a restart. If a re-read
 * fails or finds the file empty, the last good token is used and `onError` is told, so a
 * rotation caught half-way never stops polling; only the first read must succeed.
 */
export async function fileTokenSource(path: string, options: FileTokenOptions): Promise<TokenSource> {
  const now = options.now ?? Date.now;
  const refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
  let last = await readToken(path);
  let readAt = now();
  // Requests that find the token due share one read.
  let reading: Promise<string> | undefined;
  return () => {
    if (now() - readAt < refreshMs) return last;
    reading ??= readToken(path)
      .then(
        (token) => (last = token),
        (err: unknown) => (options.onError(err as Error), last),
      )
      .finally(() => {
        readAt = now();
        reading = undefined;
      });
    return reading;
  };
}

async function readToken(path: string): Promise<string> {
  const token = (await readFile(path, 'utf8')).trim();
  if (token === '') throw new Error(`token file ${path} is empty`);
  return token;
}

/** A fixed token, from the environment or the demo. */
export function staticTokenSource(token: string): TokenSource {
  const value = token.trim();
  return () => value;
}
