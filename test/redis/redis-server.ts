/**
 * Throwaway `redis-server` processes, for the tests that stop, hang or restart Redis mid-run
 * (the shared `REDIS_URL` server is never touched). No persistence, loopback only.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** True when `redis-server` is on PATH. */
export const HAS_REDIS_SERVER =
  spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface ThrowawayRedis {
  readonly port: number;
  readonly url: string;
  /** Kills the server (SIGKILL): connections drop at once, as in a crash. */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing (a hung Redis). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Stops it for good. Idempotent. */
  close(): Promise<void>;
}

/** Servers still running: killed if the worker exits before the tests close them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
});

async function launch(port: number, dir = tmpdir(), extra: string[] = []): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server on port ${port} did not start:\n${output}`));
    }, 5000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port} exited (${code}):\n${output}`));
    });
  });
  // Keep draining its output so it never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

async function kill(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGCONT');
  child.kill('SIGKILL');
  await exited;
}

/** Starts a redis-server on `port` (default: a free one); resolves once it accepts connections. */
export async function startRedisServer(port?: number): Promise<ThrowawayRedis> {
  const chosen = port ?? (await freePort());
  let child: ChildProcess | undefined = await launch(chosen);
  return {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    async stop() {
      await kill(child);
      child = undefined;
    },
    async restart() {
      await kill(child);
      child = await launch(chosen);
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async close() {
      await kill(child);
      child = undefined;
    },
  };
}

export interface ThrowawayCluster {
  /** One URL per node, e.g. for `createRedisStore({ cluster })`. */
  readonly urls: string[];
  /** The nodes; `restart()` brings a node back into the cluster with its slots (empty). */
  readonly nodes: ThrowawayRedis[];
  /** Resolves once every running node reports `cluster_state:ok` (and replicas are in sync). */
  healthy(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes their files. Idempotent. */
  close(): Promise<void>;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) => {
    execFile('redis-cli', ['-p', String(port), ...args], (err, stdout) =>
      resolve(err ? '' : stdout),
    );
  });
}

/** Whether a node sees the cluster as ok and, if it is a replica, is in sync with its master. */
async function nodeHealthy(port: number): Promise<boolean> {
  const [cluster, replication] = await Promise.all([
    cli(port, 'cluster', 'info'),
    cli(port, 'info', 'replication'),
  ]);
  return (
    cluster.includes('cluster_state:ok') &&
    replication !== '' &&
    !replication.includes('master_link_status:down')
  );
}

/**
 * A throwaway Redis Cluster of `masters` masters, each with `replicas` replicas, on free loopback
 * ports, joined with `redis-cli --cluster create`, as `.ci/run` starts its own. Each node keeps
 * its cluster config file, so a node restarted after a crash rejoins with its slots. Nodes are
 * declared failed after `nodeTimeoutMs`, so a replica takes over that soon.
 */
export async function startRedisCluster(
  masters = 3,
  { replicas = 0, nodeTimeoutMs = 15_000 }: { replicas?: number; nodeTimeoutMs?: number } = {},
): Promise<ThrowawayCluster> {
  const size = masters * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), 'm2m-cluster-'));
  const ports: number[] = [];
  while (ports.length < size) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const children: (ChildProcess | undefined)[] = [];
  // A directory per node: a replica's full sync goes through an RDB file of its own.
  const nodeDir = (i: number) => {
    const path = join(dir, String(ports[i]));
    mkdirSync(path, { recursive: true });
    return path;
  };
  const start = (i: number) =>
    launch(ports[i]!, nodeDir(i), [
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      `nodes-${ports[i]}.conf`,
      '--cluster-node-timeout',
      String(nodeTimeoutMs),
      // Replicas sync at once (not after the default 5 s), so one can take over right away.
      '--repl-diskless-sync-delay',
      '0',
    ]);
  for (let i = 0; i < size; i++) children[i] = await start(i);
  const created = spawnSync(
    'redis-cli',
    [
      '--cluster',
      'create',
      ...ports.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ],
    { encoding: 'utf8' },
  );
  const close = async () => {
    for (const child of children) await kill(child);
    children.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };
  if (created.status !== 0) {
    await close();
    throw new Error(`redis-cli --cluster create failed:\n${created.stdout}${created.stderr}`);
  }
  const healthy = async (timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // The nodes that run: a stopped one cannot say, and its replica stands in for it.
      const states = await Promise.all(ports.filter((_, i) => children[i]).map(nodeHealthy));
      if (states.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error('the cluster did not become healthy');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  await healthy();
  const nodes = ports.map(
    (port, i): ThrowawayRedis => ({
      port,
      url: `redis://127.0.0.1:${port}`,
      async stop() {
        await kill(children[i]);
        children[i] = undefined;
      },
      async restart() {
        await kill(children[i]);
        children[i] = await start(i);
      },
      pause() {
        children[i]?.kill('SIGSTOP');
      },
      resume() {
        children[i]?.kill('SIGCONT');
      },
      async close() {
        await kill(children[i]);
        children[i] = undefined;
      },
    }),
  );
  return { urls: nodes.map((node) => node.url), nodes, healthy, close };
}
