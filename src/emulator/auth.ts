import {
  authorizationFormatInvalid,
  authorizationMissing,
  machineSecretKeyInvalid,
  secretKeyInvalid,
} from './errors.js';
import type { EmulatedMachine } from './options.js';
import type { Store } from './store.js';

/** Who is calling: the instance (Clerk Secret Key) or one machine (its Machine Secret Key). */
export type Principal = { kind: 'instance' } | { kind: 'machine'; machine: EmulatedMachine };

/** The key from `Authorization: Bearer <key>`, or undefined when the header is absent or empty. */
export function bearerKey(header: string | undefined): string | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (!match) throw authorizationFormatInvalid();
  return match[1];
}

/** Resolves the caller of an M2M route, or throws the 401 Clerk would answer. */
export function authenticate(
  header: string | undefined,
  instanceSecretKey: string,
  store: Store,
): Principal {
  const key = bearerKey(header);
  if (key === undefined) throw authorizationMissing();
  if (key === instanceSecretKey) return { kind: 'instance' };
  const machine = store.machineByKey(key);
  if (machine) return { kind: 'machine', machine };
  throw key.startsWith('ak_') ? machineSecretKeyInvalid() : secretKeyInvalid();
}
