/**
 * Mounts a chain of `node:http`-typed middlewares (such as `m2mAuth()` and its guards) in the four
 * hostings m2m-guard supports: Express 5, Express 4, Connect, and a plain `node:http` server that
 * calls the middlewares by hand. Each hosting listens on 127.0.0.1 on an ephemeral port; the final
 * route answers the JSON of `req.m2m` (or `null`) and counts its calls, so a test can prove that a
 * refused request never reached it. Also: a raw-socket request, for what clients cannot send
 * (two `Authorization` headers), and a listener helper.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as netConnect } from 'node:net';
import connect from 'connect';
import express from 'express';
import express4 from 'express4';

export type NextFn = (err?: unknown) => void;
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: NextFn) => void;

export const HOSTINGS = ['express5', 'express4', 'connect', 'node:http'] as const;
export type Hosting = (typeof HOSTINGS)[number];

export interface Listening {
  readonly server: Server;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  close(): Promise<void>;
}

export interface Hosted extends Listening {
  readonly hosting: Hosting;
  /** How many requests reached the final route. */
  readonly routeCalls: number;
  /** `req.m2m` as the final route saw it, for each call. */
  readonly seen: unknown[];
  /** Errors that reached the hosting's error handler (answered 500). */
  readonly errors: unknown[];
}

/** Starts `handler` on 127.0.0.1 on an ephemeral port. */
export async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Listening> {
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  let closing: Promise<void> | undefined;
  return {
    server,
    url: `http://127.0.0.1:${address.port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** A URL on which nothing listens: connections to it are refused. */
export async function deadUrl(): Promise<string> {
  const probe = await listen((_req, res) => res.end());
  await probe.close();
  return probe.url;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value ?? null);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** Mounts `chain` then a final JSON route in one hosting, and starts it. */
export async function host(hosting: Hosting, chain: readonly Middleware[]): Promise<Hosted> {
  const seen: unknown[] = [];
  const errors: unknown[] = [];
  const fail = (err: unknown, res: ServerResponse) => {
    errors.push(err);
    if (res.headersSent) return void res.destroy();
    sendJson(res, 500, { error: 'internal_error' });
  };
  let handler: (req: IncomingMessage, res: ServerResponse) => void;
  switch (hosting) {
    case 'express5':
    case 'express4': {
      const app = hosting === 'express5' ? express() : express4();
      for (const middleware of chain) app.use(middleware);
      app.use((req, res) => {
        seen.push(req.m2m);
        res.json(req.m2m ?? null);
      });
      app.use(
        (err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) =>
          fail(err, res),
      );
      handler = app;
      break;
    }
    case 'connect': {
      const app = connect();
      for (const middleware of chain) app.use(middleware);
      app.use((req: IncomingMessage, res: ServerResponse) => {
        seen.push(req.m2m);
        sendJson(res, 200, req.m2m);
      });
      app.use((err: unknown, _req: IncomingMessage, res: ServerResponse, _next: NextFn) =>
        fail(err, res),
      );
      handler = app;
      break;
    }
    case 'node:http':
      handler = (req, res) => {
        let index = 0;
        const next: NextFn = (err) => {
          if (err) return fail(err, res);
          const middleware = chain[index++];
          if (middleware) return middleware(req, res, next);
          seen.push(req.m2m);
          sendJson(res, 200, req.m2m);
        };
        next();
      };
      break;
  }
  const listening = await listen(handler);
  return {
    ...listening,
    hosting,
    seen,
    errors,
    get routeCalls() {
      return seen.length;
    },
  };
}

export interface RawResponse {
  status: number;
  /** Lower-cased names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  text: string;
  body: unknown;
}

/**
 * Sends `GET <path>` over a raw socket with exactly these header lines (`Name: value`), so
 * repeated headers reach the server as sent, and reads the whole answer (`Connection: close`).
 */
export function rawRequest(
  url: string,
  headerLines: readonly string[],
  path = '/',
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  const head = [
    `GET ${path} HTTP/1.1`,
    `Host: ${hostname}:${port}`,
    ...headerLines,
    'Connection: close',
  ];
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = netConnect(Number(port), hostname, () =>
      socket.write(`${head.join('\r\n')}\r\n\r\n`),
    );
    socket.setTimeout(5_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks).toString('latin1')));
      } catch (err) {
        reject(err);
      }
    });
  });
}

function parseResponse(raw: string): RawResponse {
  const split = raw.indexOf('\r\n\r\n');
  if (split === -1) throw new Error(`incomplete HTTP answer: ${JSON.stringify(raw)}`);
  const [statusLine = '', ...lines] = raw.slice(0, split).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let text = raw.slice(split + 4);
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') text = unchunk(text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status, headers, text, body };
}

function unchunk(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    const size = Number.parseInt(rest.slice(0, eol), 16);
    if (!size) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
}
