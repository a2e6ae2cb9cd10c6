/**
 * A verifier replica in a child process (`fixtures/instance.ts` under tsx), driven over
 * stdin/stdout JSON lines: for the multi-process tests and the benchmark's revocation lag.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { VerifierStats } from '../../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..', '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const FIXTURE = join(here, 'fixtures', 'instance.ts');

/** A replica in a child process, driven over stdin/stdout JSON lines. */
export interface Child {
  call<T = unknown>(op: string, args?: Record<string, unknown>): Promise<T>;
  verdict(token: string): Promise<string>;
  stats(): Promise<VerifierStats>;
  close(): Promise<void>;
}

export async function spawnReplica(config: Record<string, unknown>): Promise<Child> {
  const child: ChildProcess = spawn(TSX, [FIXTURE], {
    cwd: ROOT,
    env: { ...process.env, M2M_INSTANCE: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(child, 'exit');
  child.stdin!.on('error', () => {}); // a write after it died fails its call, not the run
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  let onReady: (() => void) | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const message = JSON.parse(line) as {
      ready?: true;
      id?: number;
      result?: unknown;
      error?: string;
    };
    if (message.ready) return onReady?.();
    const waiter = pending.get(message.id!);
    pending.delete(message.id!);
    if (message.error !== undefined) waiter?.reject(new Error(message.error));
    else waiter?.resolve(message.result);
  });
  child.on('exit', (code) => {
    for (const waiter of pending.values()) {
      waiter.reject(new Error(`replica exited (${code}): ${stderr}`));
    }
    pending.clear();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.stdin!.end(); // the replica exits when its stdin ends
      reject(new Error(`replica did not start within 15 s:\n${stderr}`));
    }, 15_000);
    onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`replica exited (${code}) before it was ready:\n${stderr}`));
    });
  });

  const call = <T>(op: string, args: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  return {
    call,
    verdict: async (token) => (await call<{ verdict: string }>('verify', { token })).verdict,
    stats: () => call<VerifierStats>('stats'),
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      await call('close').catch(() => {});
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}
