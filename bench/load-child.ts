/**
 * One part of a load split between server instances, in a process of its own, so the parts
 * build their requests and run in parallel for real, and none blocks the driver's event loop
 * (where the emulator answers). `node --import tsx bench/load-child.ts`, driven over IPC: it
 * sends `{ type: 'ready' }`, then answers each `{ type: 'run', options }` with
 * `{ type: 'result', result }` or `{ type: 'error', message }`. Exits when the parent lets go.
 */
import { type LoadOptions, type LoadResult, runLoad } from './load.js';

export type LoadChildRequest = { type: 'run'; options: LoadOptions };
export type LoadChildMessage =
  | { type: 'ready' }
  | { type: 'result'; result: LoadResult }
  | { type: 'error'; message: string };

function send(message: LoadChildMessage): void {
  process.send?.(message);
}

process.on('message', (msg: LoadChildRequest) => {
  if (msg?.type !== 'run') return;
  runLoad(msg.options).then(
    (result) => send({ type: 'result', result }),
    (err: unknown) =>
      send({ type: 'error', message: err instanceof Error ? err.message : `${err}` }),
  );
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
