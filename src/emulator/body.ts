import type { IncomingMessage } from 'node:http';
import { malformedBody, unsupportedMediaType } from './errors.js';

/** Largest request body accepted; Clerk's bodies for these routes are a few hundred bytes. */
export const MAX_BODY_BYTES = 1024 * 1024;

export type BodyReadResult =
  | { kind: 'ok'; body: Buffer }
  | { kind: 'too-large' }
  /** The client went away (reset, abort) before sending the whole body: nobody to answer. */
  | { kind: 'aborted' };

/**
 * Reads the whole body, up to `limit` bytes. Never rejects: socket errors and aborts resolve
 * to `aborted`, so a misbehaving client cannot crash the emulator.
 */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<BodyReadResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (result: BodyReadResult): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        finish({ kind: 'too-large' });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish({ kind: 'ok', body: Buffer.concat(chunks) });
    // Never removed: an 'error' event without a listener would crash the process.
    req.on('error', () => finish({ kind: 'aborted' }));
    req.on('close', () => {
      if (!req.complete) finish({ kind: 'aborted' });
    });
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      finish({ kind: 'too-large' });
      return;
    }
    req.on('data', onData);
    req.on('end', onEnd);
  });
}

/** True when the media type is application/json; parameters such as charset are allowed. */
export function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  return header.split(';')[0]!.trim().toLowerCase() === 'application/json';
}

/**
 * Parses a request body into a JSON object. An empty body counts as `{}` (Clerk's SDK sends no
 * body when it has no parameters); anything else must be JSON sent as application/json.
 */
export function parseJsonObject(
  body: Buffer,
  contentType: string | undefined,
): Record<string, unknown> {
  if (body.length === 0) return {};
  if (!isJsonContentType(contentType)) throw unsupportedMediaType();
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw malformedBody('The request body is not valid JSON.');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw malformedBody('The request body must be a JSON object.');
  }
  if (depthOf(parsed) > MAX_JSON_DEPTH) {
    throw malformedBody(`The request body is nested deeper than ${MAX_JSON_DEPTH} levels.`);
  }
  return parsed as Record<string, unknown>;
}

/** Deeper JSON is refused: cloning, comparing and serialising it would exhaust the stack. */
export const MAX_JSON_DEPTH = 64;

/** The nesting depth of a parsed JSON value, measured without recursion. */
function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    deepest = Math.max(deepest, depth);
    if (deepest > MAX_JSON_DEPTH) return deepest;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return deepest;
}
