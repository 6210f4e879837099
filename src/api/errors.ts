/**
 * Why a poll failed: the `reason` label of flashback_exporter_poll_errors_total.
 * The set is part of the exporter's interface (alerts and dashboards match on it).
 */
export const FAILURE_REASONS = [
  'timeout',
  'network',
  'unauthorized',
  'rate_limited',
  'http_4xx',
  'http_5xx',
  'api_error',
  'invalid_response',
  'too_large',
] as const;

export type FailureReason = (typeof FAILURE_REASONS)[number];

/**
 * A failed request to the Flashback API. As in undici's errors, `code` is stable
 * (FLASHBACK_ERR_<REASON>) and the underlying error, if any, is kept as `cause`.
 * Messages never contain the token: they are logged and shown on the landing page.
 */
export class FlashbackApiError extends Error {
  readonly code: string;
  readonly reason: FailureReason;
  /** HTTP status, when the API answered. */
  readonly status: number | undefined;
  /** The server's Retry-After, in milliseconds, when it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(
    reason: FailureReason,
    message: string,
    options: { cause?: unknown; status?: number; retryAfterMs?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'FlashbackApiError';
    this.code = `FLASHBACK_ERR_${reason.toUpperCase()}`;
    this.reason = reason;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** Network errors, 5xx and 429 may succeed when tried again; nothing else will. */
  get transient(): boolean {
    return this.reason === 'network' || this.reason === 'http_5xx' || this.reason === 'rate_limited';
  }
}

/** The poll was cancelled (shutdown or reload), not failed: it is neither counted nor logged. */
export class AbortedError extends Error {
  readonly code = 'FLASHBACK_ERR_ABORTED';
  constructor(options?: { cause?: unknown }) {
    super('request aborted', options);
    this.name = 'AbortedError';
  }
}
