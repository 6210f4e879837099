import { readFileSync } from 'node:fs';

/** The text of a file under test/fixtures. */
export function fixture(path: string): string {
  return readFileSync(new URL(`../fixtures/${path}`, import.meta.url), 'utf8');
}

/** A JSON fixture, parsed. */
export function jsonFixture<T = unknown>(path: string): T {
  return JSON.parse(fixture(path)) as T;
}
