import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { authenticate } from './auth.js';
import { MAX_BODY_BYTES, readBody } from './body.js';
import type { HandlerContext, Reply } from './context.js';
import {
  bodyTooLarge,
  ClerkHttpError,
  injectedError,
  internalError,
  tooManyRequests,
} from './errors.js';
import {
  type FailNextOptions,
  type Fault,
  type FaultKind,
  FaultQueue,
  type M2MOperation,
} from './faults.js';
import { handleCreate } from './handle-create.js';
import { handleJwks } from './handle-jwks.js';
import { handleList } from './handle-list.js';
import { handleRevoke } from './handle-revoke.js';
import { handleVerify } from './handle-verify.js';
import { createSigningKey, type RsaJwk, type SigningKey } from './jwt.js';
import {
  type EmulatedMachine,
  type EmulatorOptions,
  latencyOption,
  type RateLimitOptions,
  type ResolvedOptions,
  rateLimitOption,
  resolveOptions,
} from './options.js';
import { RateLimiter } from './rate-limit.js';
import { matchRoute, type Route } from './routes.js';
import { Store } from './store.js';

/** Requests per operation that reached routing, whatever their outcome. */
export interface EmulatorCalls {
  create: number;
  list: number;
  revoke: number;
  verify: number;
  jwks: number;
}

/** A running emulator of Clerk's M2M endpoints. */
/** The machine names of the default emulator. */
export type DefaultMachineName = 'caller' | 'api';

export interface Emulator<Name extends string = string> {
  /** Base URL, e.g. `http://127.0.0.1:54321`: pass it as Clerk's `apiUrl`. */
  readonly url: string;
  /** The instance's Clerk Secret Key (`sk_…`). */
  readonly instanceSecretKey: string;
  /** The machines, by name. */
  readonly machines: Readonly<Record<Name, EmulatedMachine>>;
  /** Live counters of requests per operation; `reset()` zeroes them. */
  readonly calls: Readonly<EmulatorCalls>;
  /**
   * The instance's JSON Web Key Set, as `GET /v1/jwks` serves it: `{ keys: [{ kty, n, e, kid,
   * alg, use }] }`, for any JWT library (`jose.createLocalJWKSet(emulator.jwks)`).
   */
  readonly jwks: { readonly keys: readonly RsaJwk[] };
  /**
   * The same public key in PEM (SPKI): the value for the verifier's `jwtKey` option or
   * `CLERK_JWT_KEY`, to verify JWT-format tokens with no network at all.
   */
  readonly jwtKey: string;
  /** Delays every later answer by `ms` (each request on its own timer). */
  setLatency(ms: number): void;
  /**
   * Answers the next `count` matching M2M requests with `fault` instead of handling them, before
   * rate limiting, authentication and validation: an HTTP status (400–599, with a Clerk error
   * body and `Retry-After` when `options.retryAfter` is given) or a {@link FaultKind}.
   * Several calls queue up, first in first out.
   */
  failNext(count: number, fault: number | FaultKind, options?: FailNextOptions): void;
  /** Replaces the rate limit (and starts a fresh window); `false` turns it off. */
  setRateLimit(limit: RateLimitOptions | false): void;
  /**
   * Drops all tokens, zeroes the counters and puts faults, latency and rate limit back to the
   * start options. Machines and keys stay.
   */
  reset(): void;
  /** Stops listening and destroys every open connection (keep-alive or hanging). Idempotent. */
  close(): Promise<void>;
}

/** Starts an emulator; resolves once it listens. Throws `M2MConfigError` for a bad option. */
/**
 * The machine names are typed from `options.machines` (or `caller` and `api` by default), so
 * `emulator.machines.caller` needs no non-null assertion.
 */
export async function startEmulator<const Name extends string = DefaultMachineName>(
  options?: EmulatorOptions<Name>,
): Promise<Emulator<Name>> {
  const resolved = resolveOptions(options);
  const emulator = new EmulatorServer(resolved);
  await emulator.listen();
  return emulator as Emulator<Name>;
}

const M2M_HANDLERS: Record<M2MOperation, (ctx: HandlerContext) => Reply> = {
  create: handleCreate,
  list: handleList,
  revoke: handleRevoke,
  verify: handleVerify,
};

/** A body that looks like a token object, cut in half by the `reset-mid-body` fault. */
const MID_BODY_SAMPLE = JSON.stringify({
  object: 'machine_to_machine_token',
  id: `mt_${'0'.repeat(32)}`,
  subject: `mch_${'0'.repeat(27)}`,
  scopes: [],
  claims: null,
  revoked: false,
  revocation_reason: null,
  expired: false,
  expiration: null,
  last_used_at: null,
  created_at: 0,
  updated_at: 0,
});

class EmulatorServer implements Emulator {
  readonly instanceSecretKey: string;
  readonly machines: Readonly<Record<string, EmulatedMachine>>;
  readonly calls: EmulatorCalls = { create: 0, list: 0, revoke: 0, verify: 0, jwks: 0 };
  url = '';

  private readonly options: ResolvedOptions;
  private lazySigningKey: SigningKey | undefined;
  private readonly store: Store;
  private readonly faults = new FaultQueue();
  private readonly rateLimiter: RateLimiter;
  private readonly log: Logger;
  private readonly server: Server;
  /** Latency timers in flight, released at close so no request waits on a dead server. */
  private readonly timers = new Map<NodeJS.Timeout, () => void>();
  private latencyMs: number;
  private closing: Promise<void> | undefined;

  /** The instance's JWT signing key, made on first use: 2048-bit RSA takes a while. */
  private get signingKey(): SigningKey {
    this.lazySigningKey ??= createSigningKey();
    return this.lazySigningKey;
  }

  get jwks(): { readonly keys: readonly RsaJwk[] } {
    return { keys: [{ ...this.signingKey.jwk }] };
  }

  get jwtKey(): string {
    return this.signingKey.publicKeyPem;
  }

  constructor(options: ResolvedOptions) {
    this.options = options;
    this.instanceSecretKey = options.instanceSecretKey;
    this.store = new Store(options.machines);
    this.machines = Object.freeze(
      Object.fromEntries(
        options.machines.map((m) => [m.name, Object.freeze({ ...m, scopes: [...m.scopes] })]),
      ),
    );
    this.latencyMs = options.latencyMs;
    this.rateLimiter = new RateLimiter(options.rateLimit);
    this.log = options.logger.child({ component: 'm2m-emulator' });
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        // Last resort: handle() catches its own errors, so this only guards against bugs.
        this.log.error({ err }, 'emulator request failed');
        if (!res.headersSent) res.destroy();
      });
    });
  }

  async listen(): Promise<void> {
    this.server.listen(this.options.port, this.options.host);
    await once(this.server, 'listening');
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://${urlHost(this.options.host)}:${port}`;
    this.log.info({ url: this.url }, 'M2M emulator listening');
  }

  setLatency(ms: number): void {
    this.latencyMs = latencyOption(ms, 'ms', 0);
  }

  failNext(count: number, fault: number | FaultKind, options?: FailNextOptions): void {
    this.faults.add(count, fault, options);
  }

  setRateLimit(limit: RateLimitOptions | false): void {
    this.rateLimiter.set(rateLimitOption(limit, 'rateLimit'));
  }

  reset(): void {
    this.store.clear();
    for (const key of Object.keys(this.calls) as (keyof EmulatorCalls)[]) this.calls[key] = 0;
    this.faults.clear();
    this.latencyMs = this.options.latencyMs;
    this.rateLimiter.set(this.options.rateLimit);
  }

  close(): Promise<void> {
    if (!this.closing) {
      for (const [timer, release] of this.timers) {
        clearTimeout(timer);
        release();
      }
      this.timers.clear();
      this.closing = new Promise<void>((resolve) => {
        this.server.close(() => resolve());
        // Keep-alive sockets and hanging requests would otherwise hold close() open.
        this.server.closeAllConnections();
      });
    }
    return this.closing;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const latency = this.latencyMs;
    const method = req.method ?? 'GET';
    let route: Route | ClerkHttpError;
    let pathname = '/';
    let query = new URLSearchParams();
    try {
      const url = new URL(req.url ?? '/', 'http://emulator.invalid');
      pathname = url.pathname;
      query = url.searchParams;
      route = matchRoute(method, pathname);
    } catch {
      route = new ClerkHttpError(400, 'bad_request', 'Bad Request', {
        longMessage: 'The request target is not a valid URL.',
      });
    }
    if (!(route instanceof ClerkHttpError)) this.calls[route.operation] += 1;
    const operation = route instanceof ClerkHttpError ? undefined : route.operation;

    const read = await readBody(req);
    if (read.kind === 'aborted') return; // nobody left to answer
    if (read.kind === 'too-large') {
      // Answer, discard whatever is still arriving, and close the connection.
      req.resume();
      await this.delay(latency);
      this.sendError(res, bodyTooLarge(MAX_BODY_BYTES), { connection: 'close' });
      this.logLine(method, pathname, operation, 413, started);
      return;
    }

    let reply: Reply | ClerkHttpError;
    try {
      if (route instanceof ClerkHttpError) throw route;
      const now = this.options.clock();
      if (route.operation === 'jwks') {
        reply = handleJwks(req.headers.authorization, this.instanceSecretKey, this.signingKey);
      } else {
        const fault = this.faults.take(route.operation);
        if (fault) {
          await this.delay(latency);
          this.applyFault(fault, req, res);
          this.logLine(method, pathname, operation, `fault:${faultName(fault)}`, started);
          return;
        }
        const wait = this.rateLimiter.hit(now);
        if (wait !== undefined) throw tooManyRequests(wait);
        const principal = authenticate(
          req.headers.authorization,
          this.instanceSecretKey,
          this.store,
        );
        reply = M2M_HANDLERS[route.operation]({
          store: this.store,
          principal,
          rawBody: read.body,
          contentType: req.headers['content-type'],
          query,
          tokenIdParam: route.tokenIdParam,
          now,
          signingKey: () => this.signingKey,
          issuer: this.url,
        });
      }
    } catch (err) {
      if (err instanceof ClerkHttpError) reply = err;
      else {
        this.log.error({ err, method, path: pathname }, 'emulator handler failed');
        reply = internalError();
      }
    }

    await this.delay(latency);
    if (reply instanceof ClerkHttpError) this.sendError(res, reply);
    else sendJson(res, reply.status, reply.body);
    this.logLine(method, pathname, operation, reply.status, started);
  }

  private applyFault(fault: Fault, req: IncomingMessage, res: ServerResponse): void {
    if (res.destroyed) return;
    switch (fault.kind) {
      case 'status':
        this.sendError(res, injectedError(fault.status, fault.retryAfter));
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'reset-mid-body': {
        const half = MID_BODY_SAMPLE.slice(0, Math.floor(MID_BODY_SAMPLE.length / 2));
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(MID_BODY_SAMPLE),
        });
        res.write(half, () => req.socket.destroy());
        return;
      }
      case 'not-json':
        send(
          res,
          200,
          'text/html',
          '<!DOCTYPE html><html><body><h1>Bad Gateway</h1></body></html>',
        );
        return;
      case 'wrong-shape':
        sendJson(res, 200, { ok: true });
        return;
      case 'hang':
        // Never answer; close() destroys the socket.
        return;
    }
  }

  private sendError(
    res: ServerResponse,
    error: ClerkHttpError,
    extra: Record<string, string> = {},
  ): void {
    sendJson(res, error.status, error.toJson(), { ...error.headers, ...extra });
  }

  /** One timer per request, so concurrent requests wait concurrently. */
  private delay(ms: number): Promise<void> {
    if (ms <= 0 || this.closing) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.set(timer, resolve);
    });
  }

  private logLine(
    method: string,
    path: string,
    operation: string | undefined,
    status: number | string,
    started: number,
  ): void {
    this.log.debug(
      { method, path, operation, status, ms: Math.round(performance.now() - started) },
      'emulator request',
    );
  }
}

function faultName(fault: Fault): string {
  return fault.kind === 'status' ? String(fault.status) : fault.kind;
}

/** Exactly `application/json`, no charset: Clerk's SDK parses nothing else as JSON. */
function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  send(res, status, 'application/json', JSON.stringify(body), headers);
}

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  payload: string,
  headers: Record<string, string> = {},
): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, {
    ...headers,
    'content-type': contentType,
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

/** The host to put in the URL: wildcard addresses are reached through loopback. */
function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
