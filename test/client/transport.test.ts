import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  type M2MClient,
  M2MNetworkError,
  M2MTimeoutError,
  NotFoundError,
  RateLimitError,
  ServerError,
} from '../../src/client/index.js';
import { refusedUrl } from '../helpers/scripted-server.js';
import {
  captureLogger,
  clerkError,
  FAST_RETRY,
  isolateClerkEnv,
  MACHINE_KEY,
  rejection,
  SUBJECT,
  TOKEN,
  TOKEN_ID,
  tokenJson,
  useCleanup,
  useScriptedClient,
} from './fixtures.js';

isolateClerkEnv();
const track = useCleanup();

const rig = useScriptedClient({ machineSecretKey: MACHINE_KEY, retry: FAST_RETRY });
const client = rig.client;

const OPERATIONS = {
  create: (c: M2MClient, signal?: AbortSignal) => c.createToken({ signal }),
  list: (c: M2MClient, signal?: AbortSignal) => c.listTokens({ subject: SUBJECT, signal }),
  revoke: (c: M2MClient, signal?: AbortSignal) => c.revokeToken({ m2mTokenId: TOKEN_ID, signal }),
  verify: (c: M2MClient, signal?: AbortSignal) => c.verifyToken({ token: TOKEN, signal }),
} as const;
type Operation = keyof typeof OPERATIONS;
const IDEMPOTENT = ['list', 'revoke', 'verify'] as const;
const ALL = ['create', 'list', 'revoke', 'verify'] as const;

function okReply(operation: Operation) {
  if (operation === 'create') return { status: 201, body: tokenJson({ token: TOKEN }) };
  if (operation === 'list') return { body: { m2m_tokens: [tokenJson()], total_count: 1 } };
  return { body: tokenJson() };
}

function failure(status: number, headers: Record<string, string> = {}) {
  return { status, headers, body: clerkError(`http_${status}_error`) };
}

/** Resolves after `ms`. */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('retries', () => {
  for (const operation of IDEMPOTENT) {
    it.each([429, 502, 503, 504])(`${operation} is retried after %i`, async (status) => {
      rig.server.reply(failure(status), okReply(operation));
      await expect(OPERATIONS[operation](client())).resolves.toBeDefined();
      expect(rig.server.requests).toHaveLength(2);
      expect(rig.server.requests[1]?.rawBody).toBe(rig.server.requests[0]?.rawBody);
      expect(rig.server.requests[1]?.url).toBe(rig.server.requests[0]?.url);
    });

    it(`${operation} is retried after a socket closed with no answer`, async () => {
      rig.server.reply({ destroy: true }, okReply(operation));
      await expect(OPERATIONS[operation](client())).resolves.toBeDefined();
      expect(rig.server.requests).toHaveLength(2);
    });

    it(`${operation} is retried after a reset mid-body`, async () => {
      rig.server.reply({ ...okReply(operation), partialBytes: 25 }, okReply(operation));
      await expect(OPERATIONS[operation](client())).resolves.toBeDefined();
      expect(rig.server.requests).toHaveLength(2);
    });

    it.each([400, 401, 403, 404, 409, 500, 501])(
      `${operation} is not retried after %i`,
      async (status) => {
        rig.server.replyAlways(failure(status));
        const err = await rejection(OPERATIONS[operation](client()));
        expect((err as { status?: number }).status).toBe(status);
        expect(rig.server.requests).toHaveLength(1);
      },
    );
  }

  it('makes 1 + retries attempts (default 2) and throws the last error', async () => {
    rig.server.replyAlways(failure(503));
    const err = await rejection(client().verifyToken({ token: TOKEN }));
    expect(err).toBeInstanceOf(ServerError);
    expect(rig.server.requests).toHaveLength(3);
  });

  it('stops at the first success', async () => {
    rig.server.reply(failure(503), failure(502), okReply('verify'));
    rig.server.replyAlways(failure(500));
    await client({ retry: { ...FAST_RETRY, retries: 5 } }).verifyToken({ token: TOKEN });
    expect(rig.server.requests).toHaveLength(3);
  });

  it('throws the last error after the retries, whatever the first was', async () => {
    rig.server.reply(failure(503), failure(504), failure(429));
    const err = await rejection(client().listTokens({ subject: SUBJECT }));
    expect(err).toBeInstanceOf(RateLimitError);
    expect(rig.server.requests).toHaveLength(3);
  });

  it('a non-retryable error ends the retries', async () => {
    rig.server.reply(failure(503), failure(404), okReply('verify'));
    const err = await rejection(client().verifyToken({ token: TOKEN }));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(rig.server.requests).toHaveLength(2);
  });

  it.each([
    ['{ retries: 5 }', 6, { ...FAST_RETRY, retries: 5 }],
    ['{ retries: 1 }', 2, { ...FAST_RETRY, retries: 1 }],
    ['{ retries: 0 }', 1, { ...FAST_RETRY, retries: 0 }],
    ['false', 1, false as const],
  ])('retry: %s makes %i attempts', async (_label, attempts, retry) => {
    rig.server.replyAlways({ destroy: true });
    const err = await rejection(client({ retry }).verifyToken({ token: TOKEN }));
    expect(err).toBeInstanceOf(M2MNetworkError);
    expect(rig.server.requests).toHaveLength(attempts);
  });

  it('retry: false makes one attempt even on 429', async () => {
    rig.server.replyAlways(failure(429, { 'retry-after': '0' }));
    await expect(client({ retry: false }).verifyToken({ token: TOKEN })).rejects.toBeInstanceOf(
      RateLimitError,
    );
    expect(rig.server.requests).toHaveLength(1);
  });

  it('an invalid 2xx answer is not retried', async () => {
    rig.server.replyAlways({ body: 'not json' });
    const err = await rejection(client().verifyToken({ token: TOKEN }));
    expect((err as { code?: string }).code).toBe('invalid_response');
    expect(rig.server.requests).toHaveLength(1);
  });

  it('waits between attempts within the backoff bounds', async () => {
    rig.server.replyAlways(failure(503));
    await rejection(
      client({ retry: { retries: 2, minDelayMs: 100, maxDelayMs: 100 } }).verifyToken({
        token: TOKEN,
      }),
    );
    const [a, b, c] = rig.server.requests.map((r) => r.at);
    // Each wait is in [base/2, base] with base capped at 100 ms, plus the round trip.
    for (const gap of [b! - a!, c! - b!]) {
      expect(gap).toBeGreaterThanOrEqual(45);
      expect(gap).toBeLessThan(600);
    }
  });
});

describe('Retry-After', () => {
  it('is honoured: the next attempt waits for it', async () => {
    rig.server.reply(failure(429, { 'retry-after': '1' }), okReply('verify'));
    await client({ retry: { retries: 2, minDelayMs: 1, maxDelayMs: 2000 } }).verifyToken({
      token: TOKEN,
    });
    expect(rig.server.requests).toHaveLength(2);
    const [first, second] = rig.server.requests;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(900);
  });

  it('is honoured on a 503 too: Retry-After: 0 cuts a long backoff short', async () => {
    rig.server.reply(failure(503, { 'retry-after': '0' }), okReply('list'));
    await client({ retry: { retries: 1, minDelayMs: 3000, maxDelayMs: 3000 } }).listTokens({
      subject: SUBJECT,
    });
    const [first, second] = rig.server.requests;
    expect(second!.at - first!.at).toBeLessThan(500);
  });

  it('a Retry-After longer than maxDelayMs ends the retries with retryAfter', async () => {
    rig.server.replyAlways(failure(429, { 'retry-after': '5' }));
    const started = performance.now();
    const err = await rejection(client().verifyToken({ token: TOKEN }));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).retryAfter).toBe(5);
    expect(rig.server.requests).toHaveLength(1);
  });

  // Bug: parseRetryAfter reads "-1" as a date in 2001, i.e. 0 s, so the client retries at once
  // and reports retryAfter 0 instead of ignoring the unreadable header (see retry.test.ts).
  it('an unreadable Retry-After (-1) is ignored: the backoff applies', async () => {
    rig.server.replyAlways(failure(429, { 'retry-after': '-1' }));
    const c = client({ retry: { retries: 1, minDelayMs: 300, maxDelayMs: 300 } });
    const err = await rejection(c.verifyToken({ token: TOKEN }));
    expect((err as RateLimitError).retryAfter).toBeUndefined();
    const [first, second] = rig.server.requests;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(140);
  });

  it('Retry-After: 0 retries at once', async () => {
    rig.server.reply(failure(429, { 'retry-after': '0' }), okReply('verify'));
    await client({ retry: { retries: 1, minDelayMs: 2000, maxDelayMs: 2000 } }).verifyToken({
      token: TOKEN,
    });
    const [first, second] = rig.server.requests;
    expect(second!.at - first!.at).toBeLessThan(500);
  });
});

describe('create retries', () => {
  it('is retried on 429', async () => {
    rig.server.reply(failure(429), okReply('create'));
    await expect(client().createToken()).resolves.toMatchObject({ token: TOKEN });
    expect(rig.server.requests).toHaveLength(2);
  });

  it.each([500, 502, 503, 504])('is not retried on %i', async (status) => {
    rig.server.replyAlways(failure(status));
    const err = await rejection(client().createToken());
    expect(err).toBeInstanceOf(ServerError);
    expect(rig.server.requests).toHaveLength(1);
  });

  it('is not retried when the socket closes with no answer', async () => {
    rig.server.replyAlways({ destroy: true });
    await expect(client().createToken()).rejects.toBeInstanceOf(M2MNetworkError);
    expect(rig.server.requests).toHaveLength(1);
  });

  it('is not retried on a reset mid-body', async () => {
    rig.server.replyAlways({ ...okReply('create'), partialBytes: 40 });
    await expect(client().createToken()).rejects.toBeInstanceOf(M2MNetworkError);
    expect(rig.server.requests).toHaveLength(1);
  });

  it('is retried when the connection is refused (counted from the log)', async () => {
    const { logger, lines } = captureLogger();
    const c = client({ apiUrl: await refusedUrl(), logger });
    await expect(c.createToken()).rejects.toBeInstanceOf(M2MNetworkError);
    const attempts = lines.filter((line) => JSON.parse(line).msg === 'clerk api call');
    expect(attempts).toHaveLength(3);
  });

  it('succeeds when the server comes up after a refused connection', async () => {
    const url = await refusedUrl();
    const port = Number(new URL(url).port);
    const { logger, lines } = captureLogger();
    const c = client({
      apiUrl: url,
      logger,
      retry: { retries: 2, minDelayMs: 400, maxDelayMs: 400 },
    });
    const bodies: string[] = [];
    const late = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => {
        body += chunk;
      });
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify(tokenJson({ token: TOKEN })));
      });
    });
    track({ close: () => new Promise((resolve) => late.close(resolve)) });
    const created = c.createToken({ claims: { n: 1 } });
    // Start listening only once the first attempt has been refused.
    for (let i = 0; i < 100 && !lines.some((l) => l.includes('retrying')); i++) await pause(5);
    await new Promise<void>((resolve) => late.listen(port, '127.0.0.1', resolve));
    await expect(created).resolves.toMatchObject({ token: TOKEN });
    expect(bodies).toEqual([
      '{"seconds_until_expiration":null,"claims":{"n":1},"token_format":"opaque"}',
    ]);
    late.closeAllConnections();
  });
});

describe('deadline', () => {
  it.each(ALL)(
    '%s: a slow answer is an M2MTimeoutError after timeoutMs, not retried',
    async (op) => {
      rig.server.replyAlways({ ...okReply(op), delayMs: 500 });
      const started = performance.now();
      const err = await rejection(OPERATIONS[op](client({ timeoutMs: 100 })));
      const elapsed = performance.now() - started;
      expect(err).toBeInstanceOf(M2MTimeoutError);
      expect(err).toBeInstanceOf(M2MNetworkError);
      expect((err as M2MTimeoutError).code).toBe('timeout');
      expect((err as M2MTimeoutError).status).toBeUndefined();
      expect(elapsed).toBeGreaterThanOrEqual(95);
      expect(elapsed).toBeLessThan(400);
      await pause(100);
      expect(rig.server.requests).toHaveLength(1);
    },
  );

  it('covers the body: headers on time but the body too late is a timeout', async () => {
    rig.server.replyAlways({ ...okReply('verify'), partialBytes: 10, restAfterMs: 500 });
    const started = performance.now();
    const err = await rejection(client({ timeoutMs: 150 }).verifyToken({ token: TOKEN }));
    expect(err).toBeInstanceOf(M2MTimeoutError);
    expect(performance.now() - started).toBeLessThan(450);
    expect(rig.server.requests).toHaveLength(1);
  });

  it('applies to each attempt, not to the call', async () => {
    rig.server.reply(
      { ...failure(503), delayMs: 120 },
      { ...failure(503), delayMs: 120 },
      { ...okReply('verify'), delayMs: 120 },
    );
    await expect(client({ timeoutMs: 250 }).verifyToken({ token: TOKEN })).resolves.toBeDefined();
    expect(rig.server.requests).toHaveLength(3);
  });

  it('an answer just in time is not a timeout', async () => {
    rig.server.reply({ ...okReply('verify'), delayMs: 50 });
    await expect(client({ timeoutMs: 400 }).verifyToken({ token: TOKEN })).resolves.toBeDefined();
  });
});

describe('abort', () => {
  it.each(ALL)('%s: aborting mid-request rejects with the reason, promptly', async (op) => {
    rig.server.replyAlways({ ...okReply(op), delayMs: 1000 });
    const controller = new AbortController();
    const reason = new Error('caller gave up');
    const call = OPERATIONS[op](client(), controller.signal);
    await rig.server.waitForRequests(1);
    const abortedAt = performance.now();
    controller.abort(reason);
    const err = await rejection(call);
    expect(err).toBe(reason);
    expect(performance.now() - abortedAt).toBeLessThan(250);
    await pause(50);
    expect(rig.server.requests).toHaveLength(1);
  });

  it('an abort without a reason rejects with an AbortError', async () => {
    rig.server.replyAlways({ ...okReply('verify'), delayMs: 1000 });
    const controller = new AbortController();
    const call = client().verifyToken({ token: TOKEN, signal: controller.signal });
    await rig.server.waitForRequests(1);
    controller.abort();
    const err = await rejection(call);
    expect(err).toBeInstanceOf(DOMException);
    expect((err as DOMException).name).toBe('AbortError');
    expect(err).not.toBeInstanceOf(M2MNetworkError);
  });

  it('AbortSignal.timeout rejects with its TimeoutError, not an M2MTimeoutError', async () => {
    rig.server.replyAlways({ ...okReply('verify'), delayMs: 1000 });
    const err = await rejection(
      client().verifyToken({ token: TOKEN, signal: AbortSignal.timeout(50) }),
    );
    expect((err as DOMException).name).toBe('TimeoutError');
    expect(err).not.toBeInstanceOf(M2MTimeoutError);
  });

  it('aborting during a retry wait rejects promptly and sends nothing more', async () => {
    rig.server.replyAlways(failure(503));
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const call = client({ retry: { retries: 2, minDelayMs: 3000, maxDelayMs: 3000 } }).verifyToken({
      token: TOKEN,
      signal: controller.signal,
    });
    await rig.server.waitForRequests(1);
    await pause(100);
    const abortedAt = performance.now();
    controller.abort(reason);
    expect(await rejection(call)).toBe(reason);
    expect(performance.now() - abortedAt).toBeLessThan(250);
    await pause(50);
    expect(rig.server.requests).toHaveLength(1);
  });

  it('aborting during a Retry-After wait rejects promptly', async () => {
    rig.server.replyAlways(failure(429, { 'retry-after': '2' }));
    const controller = new AbortController();
    const call = client({ retry: { retries: 1, minDelayMs: 1, maxDelayMs: 5000 } }).listTokens({
      subject: SUBJECT,
      signal: controller.signal,
    });
    await rig.server.waitForRequests(1);
    await pause(50);
    const abortedAt = performance.now();
    controller.abort(new Error('stop'));
    expect(((await rejection(call)) as Error).message).toBe('stop');
    expect(performance.now() - abortedAt).toBeLessThan(250);
    expect(rig.server.requests).toHaveLength(1);
  });

  it('an already aborted signal rejects before any request', async () => {
    rig.server.replyAlways(okReply('create'));
    const reason = new Error('too late');
    const err = await rejection(client().createToken({ signal: AbortSignal.abort(reason) }));
    expect(err).toBe(reason);
    await pause(20);
    expect(rig.server.requests).toHaveLength(0);
  });

  it('a signal that never aborts changes nothing', async () => {
    rig.server.reply(failure(503), okReply('verify'));
    const controller = new AbortController();
    await expect(
      client().verifyToken({ token: TOKEN, signal: controller.signal }),
    ).resolves.toMatchObject({ id: TOKEN_ID });
    expect(rig.server.requests).toHaveLength(2);
  });
});
