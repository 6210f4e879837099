import { createHmac, randomBytes, randomInt } from 'node:crypto';
import bcrypt from 'bcryptjs';

/**
 * A bcrypt hash as htpasswd (`$2y$`), Go (`$2a$`) and bcryptjs (`$2b$`) write it: the three
 * prefixes name the same algorithm for every password shorter than 255 bytes.
 */
export const BCRYPT_HASH_RE = /^\$2[aby]?\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;

const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** The work factor of a bcrypt hash. */
export function costOf(hash: string): number {
  return Number(hash.split('$')[2]);
}

/**
 * A well-formed hash of no password, compared against when the user is unknown, so an
 * unknown user costs what a known one does. Its cost is the one most users' hashes have
 * (the higher on a tie; 10, htpasswd's usual, when there are none): with mixed costs only
 * the users whose cost differs can be told apart by timing.
 */
export function dummyHashFor(hashes: readonly string[]): string {
  const counts = new Map<number, number>();
  for (const h of hashes) counts.set(costOf(h), (counts.get(costOf(h)) ?? 0) + 1);
  let cost = 10;
  let best = 0;
  for (const [c, n] of counts) {
    if (n > best || (n === best && c > cost)) [cost, best] = [c, n];
  }
  const tail = Array.from({ length: 53 }, () => BCRYPT_ALPHABET[randomInt(BCRYPT_ALPHABET.length)]).join('');
  return `$2b$${String(cost).padStart(2, '0')}$${tail}`;
}

/** The user and password of an `Authorization: Basic …` header, as Go's Request.BasicAuth reads it. */
export function parseBasicAuth(header: string | undefined): { user: string; password: string } | undefined {
  if (header === undefined) return undefined;
  const match = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Tuning for BasicAuthenticator; the defaults are the toolkit's. */
export interface BasicAuthOptions {
  /** Outcomes remembered; the toolkit keeps 100. */
  readonly cacheSize?: number;
  /** bcrypt's compare; replaceable so a test can count the calls. */
  readonly compare?: (password: string, hash: string) => Promise<boolean>;
}

/**
 * Checks basic-auth credentials against bcrypt hashes. bcrypt is slow on purpose (about
 * 70 ms at cost 10), and Prometheus sends the same credentials every scrape, so outcomes are
 * cached as the toolkit caches them: keyed by user, hash and password, so a rotated hash is
 * a miss. The key is an HMAC under a per-process random key: the cache never holds a password
 * nor anything that can be checked against one offline. Identical checks in flight at once
 * (two Prometheus replicas) share one bcrypt run.
 */
export class BasicAuthenticator {
  readonly #cacheSize: number;
  readonly #compare: (password: string, hash: string) => Promise<boolean>;
  readonly #secret = randomBytes(32);
  readonly #cache = new Map<string, boolean>();
  readonly #inFlight = new Map<string, Promise<boolean>>();

  constructor(options: BasicAuthOptions = {}) {
    this.#cacheSize = options.cacheSize ?? 100;
    this.#compare = options.compare ?? ((password, hash) => bcrypt.compare(password, hash));
  }

  /** True when the header names a configured user with the right password. */
  async verify(authorization: string | undefined, users: ReadonlyMap<string, string>, dummyHash: string): Promise<boolean> {
    const credentials = parseBasicAuth(authorization);
    if (credentials === undefined) return false;
    const known = users.get(credentials.user);
    // An unknown user runs bcrypt too, against a hash of the same cost, so timing reveals nothing.
    const hash = known ?? dummyHash;
    const key = createHmac('sha256', this.#secret).update(JSON.stringify([credentials.user, hash, credentials.password])).digest('base64');
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      // Refresh its place: the least recently used outcome is the one dropped.
      this.#cache.delete(key);
      this.#cache.set(key, cached);
      return cached && known !== undefined;
    }
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      pending = this.#compare(credentials.password, hash).then(
        (ok) => {
          this.#remember(key, ok);
          return ok;
        },
        () => false,
      );
      pending.finally(() => this.#inFlight.delete(key)).catch(() => {});
      this.#inFlight.set(key, pending);
    }
    return (await pending) && known !== undefined;
  }

  #remember(key: string, ok: boolean): void {
    if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(key, ok);
  }
}
