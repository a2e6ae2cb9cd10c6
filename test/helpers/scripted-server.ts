/**
 * A real HTTP server on 127.0.0.1 whose answers are queued by the test, for exact control of
 * statuses, headers, delays and connection faults. It records every request it gets, with its
 * arrival time, so tests count attempts and measure waits from the server's side.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One scripted answer. */
export interface ScriptedReply {
  /** HTTP status. Default `200`. */
  status?: number;
  headers?: Record<string, string | number | string[]>;
  /** A string or Buffer is sent as is; anything else is sent as JSON. Omitted: an empty body. */
  body?: unknown;
  /** Wait this long (after the request body has arrived) before answering or failing. */
  delayMs?: number;
  /** Destroy the socket without sending anything. */
  destroy?: boolean;
  /**
   * Send the status and headers (with the `content-length` of the whole body) and only the first
   * `partialBytes` bytes of the body, then destroy the socket: a connection reset mid-body.
   */
  partialBytes?: number;
  /** With `partialBytes`: send the rest of the body after this many ms instead of destroying. */
  restAfterMs?: number;
}

/** A reply, or a function choosing one from the request. */
export type ScriptedHandler = ScriptedReply | ((request: RecordedRequest) => ScriptedReply);

export interface RecordedRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  /** Path without the query. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  rawBody: string;
  /** The body parsed as JSON; `undefined` when it is empty or not JSON. */
  body: unknown;
  /** `performance.now()` when the request's headers arrived. */
  at: number;
  /** The client's port: requests on one kept-alive connection share it. */
  remotePort: number | undefined;
}

export interface ScriptedServer {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Every request received so far, in arrival order. */
  readonly requests: RecordedRequest[];
  /** Queues answers, used in order, one per request. */
  reply(...replies: ScriptedHandler[]): void;
  /**
   * The answer used when the queue is empty. Default: a 500 with code `unscripted`, which the
   * client does not retry, so an unexpected request shows up as a failing test.
   */
  replyAlways(reply: ScriptedHandler): void;
  /** Resolves once at least `count` requests have arrived. */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  /** Closes the server, destroying every open socket and cancelling pending answers. */
  close(): Promise<void>;
}

const UNSCRIPTED: ScriptedReply = {
  status: 500,
  body: {
    errors: [
      { code: 'unscripted', message: 'no reply queued', long_message: 'no reply was queued' },
    ],
  },
};

function bodyBytes(body: unknown): Buffer {
  if (body === undefined) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(JSON.stringify(body), 'utf8');
}

export async function startScriptedServer(): Promise<ScriptedServer> {
  const requests: RecordedRequest[] = [];
  const queue: ScriptedHandler[] = [];
  let fallback: ScriptedHandler = UNSCRIPTED;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<() => void>();

  function send(res: ServerResponse, reply: ScriptedReply): void {
    const socket = res.socket;
    if (reply.destroy) {
      socket?.destroy();
      return;
    }
    const body = bodyBytes(reply.body);
    const headers: Record<string, string | number | string[]> = {};
    if (
      reply.body !== undefined &&
      typeof reply.body !== 'string' &&
      !Buffer.isBuffer(reply.body)
    ) {
      headers['content-type'] = 'application/json';
    }
    Object.assign(headers, reply.headers);
    headers['content-length'] = body.length;
    res.writeHead(reply.status ?? 200, headers);
    if (reply.partialBytes !== undefined) {
      const rest = body.subarray(reply.partialBytes);
      res.write(body.subarray(0, reply.partialBytes), () => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (reply.restAfterMs === undefined) socket?.destroy();
          else if (!res.destroyed) res.end(rest);
        }, reply.restAfterMs ?? 10);
        timers.add(timer);
      });
      return;
    }
    res.end(body);
  }

  const server = createServer((req, res) => {
    const at = performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = rawBody === '' ? undefined : JSON.parse(rawBody);
      } catch {
        body = undefined;
      }
      const url = req.url ?? '/';
      const parsed = new URL(url, 'http://scripted.invalid');
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url,
        path: parsed.pathname,
        query: parsed.searchParams,
        headers: req.headers,
        rawBody,
        body,
        at,
        remotePort: req.socket.remotePort,
      };
      requests.push(recorded);
      for (const wake of [...waiters]) wake();
      const handler = queue.shift() ?? fallback;
      const reply = typeof handler === 'function' ? handler(recorded) : handler;
      if (reply.delayMs) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!res.destroyed) send(res, reply);
        }, reply.delayMs);
        timers.add(timer);
      } else {
        send(res, reply);
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    reply(...replies) {
      queue.push(...replies);
    },
    replyAlways(reply) {
      fallback = reply;
    },
    waitForRequests(count, timeoutMs = 5000) {
      if (requests.length >= count) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`scripted server: ${requests.length} of ${count} requests arrived`));
        }, timeoutMs);
        const check = () => {
          if (requests.length < count) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      });
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      });
      return closed;
    },
  };
}

/** A URL on 127.0.0.1 where nothing listens (connection refused): a port just released. */
export async function refusedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
