/**
 * The middleware's cost inside a real `node:http` server loop: real parser, real
 * `IncomingMessage`s, a real socket. One process sends pipelined keep-alive requests to its own
 * server and counts the answers; CPU time per request is taken with and without the middleware,
 * and the difference is the middleware's (the client's share is the same in both and cancels).
 */

import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';

type Middleware = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void;

const BODY = '{"pong":true}';

/** Sends `requests` GETs in pipelined batches of `batch`; resolves with CPU µs per request. */
export async function serverLoopCpu(
  middleware: Middleware | undefined,
  authorization: string,
  requests: number,
  batch = 64,
): Promise<number> {
  const reply = (res: ServerResponse) => {
    res.setHeader('content-type', 'application/json');
    res.end(BODY);
  };
  const server = createServer((req, res) => {
    if (!middleware) return reply(res);
    middleware(req, res, (err) => {
      if (err) {
        res.statusCode = 500;
        res.end();
      } else reply(res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(socket, 'connect');
  socket.setNoDelay(true);
  const request = `GET /internal/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${authorization}\r\n\r\n`;
  const chunk = request.repeat(batch);
  let answered = 0;
  let waiting: (() => void) | undefined;
  let tail = '';
  socket.setEncoding('latin1');
  socket.on('data', (data: string) => {
    // Count whole bodies, also across chunk boundaries.
    const text = tail + data;
    let at = text.indexOf(BODY);
    let last = 0;
    while (at !== -1) {
      answered++;
      last = at + BODY.length;
      at = text.indexOf(BODY, last);
    }
    tail = text.slice(Math.max(last, text.length - BODY.length));
    if (waiting && answered % batch === 0) waiting();
  });
  const start = process.cpuUsage();
  for (let sent = 0; sent < requests; sent += batch) {
    const done = new Promise<void>((resolve) => {
      waiting = resolve;
    });
    socket.write(chunk);
    await done;
  }
  const { user, system } = process.cpuUsage(start);
  socket.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  if (answered < requests) throw new Error(`only ${answered} of ${requests} answered 200`);
  return (user + system) / answered;
}
