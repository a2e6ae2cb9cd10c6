/**
 * What the framework examples share: a Clerk to verify against (an in-process emulator unless
 * CLERK_API_URL is set), tokens to call with, and the four calls each example makes and prints:
 * the caller's token (200), no token (401), a bad token (401), a token of a machine the service
 * does not accept (403). A call that does not answer as expected fails the example.
 *
 * Against real Clerk: set CLERK_API_URL, CLERK_SECRET_KEY (the instance key the service
 * verifies with), CLERK_MACHINE_SECRET_KEY (a caller machine's key) and API_MACHINE_ID (the
 * service's machine id, in the caller's scopes). The outsider call is then skipped.
 */
import { pathToFileURL } from 'node:url';
// In an app: from 'm2m-guard/emulator' and 'm2m-guard'.
import { startEmulator } from '../../src/emulator/index.js';
import { createM2MClient } from '../../src/index.js';

export interface Scenario {
  /**
   * Options for `m2mAuth()`: verify with the instance key for any machine of the instance
   * (`anyMachine`), so the guards decide who may pass.
   */
  readonly options: { apiUrl: string; secretKey: string; anyMachine: true };
  /** The service's machine id, for `requireMachine()`. */
  readonly apiMachineId: string;
  readonly callerToken: string;
  /** A token of a machine whose scopes do not name the service; emulator only. */
  readonly outsiderToken: string | undefined;
  close(): Promise<void>;
}

export async function startScenario(): Promise<Scenario> {
  const env = process.env;
  if (env.CLERK_API_URL) {
    const { CLERK_SECRET_KEY: secretKey, CLERK_MACHINE_SECRET_KEY: callerKey } = env;
    if (!secretKey || !callerKey || !env.API_MACHINE_ID) {
      throw new Error(
        'with CLERK_API_URL, set CLERK_SECRET_KEY, CLERK_MACHINE_SECRET_KEY, API_MACHINE_ID',
      );
    }
    const caller = createM2MClient({ apiUrl: env.CLERK_API_URL, machineSecretKey: callerKey });
    const { token } = await caller.createToken();
    await caller.close();
    return {
      options: { apiUrl: env.CLERK_API_URL, secretKey, anyMachine: true },
      apiMachineId: env.API_MACHINE_ID,
      callerToken: token,
      outsiderToken: undefined,
      close: async () => undefined,
    };
  }
  const emulator = await startEmulator({
    machines: [{ name: 'caller', scopedMachines: ['api'] }, { name: 'api' }, { name: 'outsider' }],
  });
  const mint = async (name: 'caller' | 'outsider') => {
    const client = createM2MClient({
      apiUrl: emulator.url,
      machineSecretKey: emulator.machines[name]!.secretKey,
    });
    const { token } = await client.createToken();
    await client.close();
    return token;
  };
  return {
    options: { apiUrl: emulator.url, secretKey: emulator.instanceSecretKey, anyMachine: true },
    apiMachineId: emulator.machines.api!.id,
    callerToken: await mint('caller'),
    outsiderToken: await mint('outsider'),
    close: () => emulator.close(),
  };
}

/** Sends a request: over HTTP to a base URL, or straight to a fetch handler. */
export type Send = (path: string, headers: Record<string, string>) => Promise<Response>;

export function overHttp(baseUrl: string): Send {
  return (path, headers) => fetch(`${baseUrl}${path}`, { headers });
}

/** Makes the four calls, prints each answer, and throws if one is not as expected. */
export async function callAll(
  send: Send,
  path: string,
  scenario: Scenario,
  log: (line: string) => void,
): Promise<void> {
  const calls: [string, string | undefined, number][] = [
    ["caller's token", scenario.callerToken, 200],
    ['no token', undefined, 401],
    ['bad token', 'mt_not_a_real_token_at_all_0000000000000', 401],
  ];
  if (scenario.outsiderToken) calls.push(['token not scoped to us', scenario.outsiderToken, 403]);
  for (const [label, token, expected] of calls) {
    const res = await send(path, token ? { authorization: `Bearer ${token}` } : {});
    log(`GET ${path} (${label}) -> ${res.status} ${await res.text()}`);
    if (res.status !== expected)
      throw new Error(`${label}: expected ${expected}, got ${res.status}`);
  }
}

/** Runs `main` when the file is the program (`npx tsx examples/<name>.ts`); exit 1 on failure. */
export function runAsProgram(
  moduleUrl: string,
  name: string,
  main: (log: (line: string) => void) => Promise<void>,
): void {
  if (moduleUrl !== pathToFileURL(process.argv[1] ?? '').href) return;
  main(console.log).catch((err: unknown) => {
    console.error(`${name} example failed:`, err);
    process.exit(1); // a failed example ends, whatever it left running
  });
}
