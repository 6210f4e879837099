import { readFile } from 'node:fs/promises';

/** Supplies the API token for each request. */
export type TokenSource = () => Promise<string>;

/**
 * Reads the token file at every poll, so a rotated secret (a Kubernetes Secret volume,
 * Vault agent) takes effect without a restart. If a later read fails or finds the file
 * empty, the last good token is used and `onError` is told, so a rotation caught
 * half-way never stops polling; only the first read must succeed.
 */
export async function fileTokenSource(path: string, onError: (err: Error) => void): Promise<TokenSource> {
  let last = await readToken(path);
  return async () => {
    try {
      last = await readToken(path);
    } catch (err) {
      onError(err as Error);
    }
    return last;
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
  return () => Promise.resolve(value);
}
