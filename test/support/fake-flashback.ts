import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { drained } from '../../src/http/server.js';

/** A request the fake received. */
export interface FakeRequest {
  readonly path: string;
  readonly query: Record<string, string>;
  readonly headers: IncomingHttpHeaders;
}

/** How the fake answers one request. */
export interface Reply {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  /** An object is sent as JSON; a string as is. */
  readonly body?: unknown;
  /** Wait this long before answering. */
  readonly delayMs?: number;
  /** Never answer (until the server closes). */
  readonly hang?: boolean;
  /** Send the headers and part of the body, then stall. */
  readonly stallBody?: boolean;
  /** Destroy the connection without answering. */
  readonly reset?: boolean;
  /** Stream a JSON-looking body of this many bytes, chunked, honouring backpressure. */
  readonly streamBytes?: number;
}

export type Handler = (req: FakeRequest) => Reply | Promise<Reply>;

/**
 * A stand-in for the Flashback API on a real loopback port: tests script its answers and
 * read back what it was sent, how many requests overlapped and how many sockets it saw.
 */
export class FakeFlashback {
  readonly requests: FakeRequest[] = [];
  maxConcurrent = 0;
  connections = 0;
  /** Bytes written by `streamBytes` replies before the client hung up or the body ended. */
  streamedBytes = 0;
  #inFlight = 0;
  #handler: Handler;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  url = '';

  private constructor(handler: Handler) {
    this.#handler = handler;
    this.#server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const request = { path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers };
      this.requests.push(request);
      this.#inFlight++;
      this.maxConcurrent = Math.max(this.maxConcurrent, this.#inFlight);
      res.on('close', () => this.#inFlight--);
      void Promise.resolve(this.#handler(request)).then((reply) => this.#answer(res, reply));
    });
    this.#server.on('connection', (socket) => {
      this.connections++;
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(handler: Handler = () => ({ status: 404 })): Promise<FakeFlashback> {
    const fake = new FakeFlashback(handler);
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.#server.address() as AddressInfo).port}`;
    return fake;
  }

  /** Replaces how the fake answers from now on. */
  respond(handler: Handler): void {
    this.#handler = handler;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #stream(res: ServerResponse, total: number, headers: Record<string, string> = {}): Promise<void> {
    res.writeHead(200, { 'content-type': 'application/json', ...headers });
    const chunk = Buffer.from(`${'{"ts":1,"tokensIn":1,"tokensOut":1,"requests":1},'.repeat(1300)}`);
    res.write('{"success":true,"meta":{},"summary":{},"series":[');
    while (this.streamedBytes < total && !res.destroyed) {
      this.streamedBytes += chunk.length;
      if (!res.write(chunk)) await drained(res);
    }
    res.end('{"ts":1,"tokensIn":1,"tokensOut":1,"requests":1}]}');
  }

  async #answer(res: ServerResponse, reply: Reply): Promise<void> {
    if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
    if (reply.hang) return;
    if (reply.reset) return void res.socket?.destroy();
    const body = reply.body === undefined ? '' : typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
    const type = typeof reply.body === 'string' ? 'text/plain' : 'application/json';
    if (reply.streamBytes !== undefined) return this.#stream(res, reply.streamBytes, reply.headers);
    if (reply.stallBody) {
      res.writeHead(reply.status ?? 200, { 'content-type': type, 'content-length': String(Buffer.byteLength(body) + 100), ...reply.headers });
      res.write(body);
      return;
    }
    const length = reply.headers?.['transfer-encoding'] === undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {};
    res.writeHead(reply.status ?? 200, { 'content-type': type, ...length, ...reply.headers });
    res.end(body);
  }
}

