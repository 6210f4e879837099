import type { SeriesPoint, StatsResponse } from './response.js';

/** `bucket` in the config: publish the newest bucket even while it fills, or the last one that has closed. */
export type BucketMode = 'latest' | 'complete';

/**
 * The time bucket to publish. The API does not promise an order, so "latest" is the
 * greatest `ts`. "complete" skips a bucket still filling: the newest whose end
 * (ts + bucket size) is at or before meta.end, or before now when meta.end is absent.
 */
export function selectBucket(
  response: StatsResponse,
  mode: BucketMode,
  bucketSizeSeconds: number,
  nowSeconds: number,
): SeriesPoint | undefined {
  const limit = response.meta.end ?? nowSeconds;
  let best: SeriesPoint | undefined;
  for (const point of response.series) {
    if (mode === 'complete' && point.ts + bucketSizeSeconds > limit) continue;
    if (best === undefined || point.ts > best.ts) best = point;
  }
  return best;
}
