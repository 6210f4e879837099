import { readFile } from 'node:fs/promises';

/**
 * Supplies the API token for each request: a string when one is at hand, so the request
 * can leave without waiting a turn of the event loop, or a promise while it is read.
 */
export type TokenSource = () => string | Promise<string>;

/** How a token file is watched: where its errors go, and how often it is read. */
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
  checkToken(token, `token file ${path}`);
  return token;
}

/**
 * Throws when a token cannot be sent as it is: undici refuses a header with a control
 * character, and every request would then fail as a network error that retries cannot
 * fix. A bearer token is one word of printable ASCII (RFC 6750 §2.1), so a line break, a
 * space or a stray byte means the file or variable holds something else as well.
 */
export function checkToken(token: string, source: string): void {
  const at = token.search(/[^\x21-\x7e]/);
  if (at === -1) return;
  const code = token.charCodeAt(at);
  const what = code === 0x0a || code === 0x0d ? 'a line break' : code === 0x20 || code === 0x09 ? 'a space' : `the character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  throw new Error(`${source} holds ${what} at position ${at + 1}: a token is one word of printable ASCII`);
}

/** A fixed token, from the environment or the demo; `source` names it in the error. */
export function staticTokenSource(token: string, source = 'the token'): TokenSource {
  const value = token.trim();
  checkToken(value, source);
  return () => value;
}
