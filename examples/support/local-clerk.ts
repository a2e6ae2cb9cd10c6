/**
 * Lets an example that reads its keys from the environment run with none set: when
 * CLERK_MACHINE_SECRET_KEY is unset, starts the emulator and points the environment at it, as
 * the machine `api` (which `caller` may call). Import it first: it sets the variables before the
 * example's own code reads them. Not needed in an app, which sets its variables.
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
// In an app: from 'm2m-guard/emulator' and 'm2m-guard'.
import { type DefaultMachineName, type Emulator, startEmulator } from '../../src/emulator/index.js';
import { createM2MClient } from '../../src/index.js';

/** The emulator started here, or `undefined` when the environment names a Clerk to use. */
export const emulator: Emulator<DefaultMachineName> | undefined = process.env
  .CLERK_MACHINE_SECRET_KEY
  ? undefined
  : await startLocalClerk();

async function startLocalClerk(): Promise<Emulator<DefaultMachineName>> {
  const started = await startEmulator({ logger: false });
  process.env.CLERK_API_URL = started.url;
  process.env.CLERK_MACHINE_SECRET_KEY = started.machines.api.secretKey;
  process.env.PORT ??= '0';
  return started;
}

/**
 * With real variables: says where the server listens and leaves it running. With the local
 * emulator: calls `path` once with a token of `caller` and once without, prints both answers,
 * and stops everything, so the example ends by itself.
 */
export async function showOrServe(
  server: Server,
  path: string,
  log: (line: string) => void = console.log,
): Promise<void> {
  if (!server.listening) await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  if (!emulator) {
    log(`listening: ${url} (Ctrl+C stops)`);
    return;
  }
  log(
    `no CLERK_MACHINE_SECRET_KEY set: serving as the emulator's machine \`api\` at ${emulator.url}`,
  );
  const caller = createM2MClient({
    apiUrl: emulator.url,
    machineSecretKey: emulator.machines.caller.secretKey,
    logger: false,
  });
  try {
    const { token } = await caller.createToken({ claims: { job: 'nightly' } });
    const withToken = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    log(`GET ${path} (caller's token) -> ${withToken.status} ${await withToken.text()}`);
    const without = await fetch(url);
    log(`GET ${path} (no token) -> ${without.status} ${await without.text()}`);
  } finally {
    server.closeAllConnections();
    server.close();
    await caller.close();
    await emulator.close();
  }
}
