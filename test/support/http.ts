import { request, type IncomingHttpHeaders } from 'node:http';

/** A raw HTTP answer: no decompression, no redirects, unlike fetch. */
export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** Whether the whole message arrived: for a chunked body, up to its last chunk. */
  readonly complete: boolean;
}

/** Sends one request with exactly the given headers and returns the bytes as sent. */
export function rawRequest(url: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
