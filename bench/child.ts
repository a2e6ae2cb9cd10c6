/**
 * Child processes of the benchmark: the server under test, the load generators of a split
 * load, and the cold-start check.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ColdStartResult } from './cold-start.js';
import type { LoadOptions, LoadResult } from './load.js';
import type { LoadChildMessage, LoadChildRequest } from './load-child.js';
import type { ServerKind } from './scenarios.js';
import type { ServerStats } from './server.js';

/** The repository root: children run from it so `--import tsx` resolves. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface ServerProcess {
  origin: string;
  pid: number;
  /** Peak RSS and current memory, asked over IPC. */
  stats(): Promise<ServerStats>;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stop(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const done = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(timer);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Spawns `bench/server.ts <kind>` and resolves once it prints its port. */
export async function startServer(
  kind: ServerKind,
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/server.ts', kind], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const ready = new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { event?: string; port?: number };
        if (msg.event === 'ready' && typeof msg.port === 'number') resolve(msg.port);
      } catch {
        // not our line
      }
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      reject(new Error(`server ${kind} exited before it was ready (code ${code}, ${signal})`));
    });
  });
  let port: number;
  try {
    port = await withTimeout(ready, timeoutMs, `server ${kind} start`);
  } catch (err) {
    await stop(child);
    throw err;
  }
  return {
    origin: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stats() {
      if (exited(child)) return Promise.reject(new Error(`server ${kind} died during the run`));
      const answer = new Promise<ServerStats>((resolve) => {
        const onMessage = (msg: ServerStats) => {
          if (msg?.type !== 'stats') return;
          child.off('message', onMessage);
          resolve(msg);
        };
        child.on('message', onMessage);
      });
      child.send({ type: 'stats' });
      return withTimeout(answer, 5000, `server ${kind} stats`);
    },
    stop: () => stop(child),
  };
}

export interface LoadProcess {
  /** Runs one load (`runLoad()`) in the child; resolves with its result. */
  run(options: LoadOptions): Promise<LoadResult>;
  stop(): Promise<void>;
}

/** Spawns `bench/load-child.ts` and resolves once it has loaded (autocannon included). */
export async function startLoadProcess(timeoutMs = 30_000): Promise<LoadProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/load-child.ts'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (msg: LoadChildMessage) => {
      if (msg?.type === 'ready') resolve();
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      reject(new Error(`load process exited before it was ready (code ${code}, ${signal})`));
    });
  });
  try {
    await withTimeout(ready, timeoutMs, 'load process start');
  } catch (err) {
    await stop(child);
    throw err;
  }
  return {
    run(options) {
      if (exited(child)) return Promise.reject(new Error('load process died'));
      const answer = new Promise<LoadResult>((resolve, reject) => {
        const onExit = (code: number | null, signal: string | null) => {
          reject(new Error(`load process exited during its run (code ${code}, ${signal})`));
        };
        const onMessage = (msg: LoadChildMessage) => {
          if (msg?.type !== 'result' && msg?.type !== 'error') return;
          child.off('message', onMessage);
          child.off('exit', onExit);
          if (msg.type === 'result') resolve(msg.result);
          else reject(new Error(`load process: ${msg.message}`));
        };
        child.on('message', onMessage);
        child.once('exit', onExit);
      });
      child.send({ type: 'run', options } satisfies LoadChildRequest);
      // autocannon's own request timeout is 10 s; leave room for its set-up as well.
      return withTimeout(answer, options.durationSec * 1000 + 60_000, 'load process run');
    },
    stop: () => stop(child),
  };
}

/** Runs `bench/cold-start.ts --json` with `--expose-gc`; resolves with its result and exit code. */
export async function runColdStartChild(
  latencyMs: number,
): Promise<{ code: number | null; result: ColdStartResult | undefined }> {
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      '--import',
      'tsx',
      'bench/cold-start.ts',
      '--json',
      '--latency',
      `${latencyMs}`,
    ],
    // Its progress lines go to stderr, as ours do.
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  const last = out.trim().split('\n').pop();
  let result: ColdStartResult | undefined;
  try {
    result = last ? (JSON.parse(last) as ColdStartResult) : undefined;
  } catch {
    result = undefined;
  }
  return { code, result };
}
