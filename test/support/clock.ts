import type { Clock } from '../../src/api/limiter.js';

/** A clock whose sleeps return at once and move time forward, recording each wait. */
export class FakeClock implements Clock {
  readonly sleeps: number[] = [];
  time: number;
  constructor(time = 1_700_000_000_000) {
    this.time = time;
  }
  now(): number {
    return this.time;
  }
  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.time += ms;
  }
}
