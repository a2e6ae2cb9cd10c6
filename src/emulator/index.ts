/**
 * `m2m-guard/emulator`: a local emulator of Clerk's four M2M token endpoints and the JWKS, for
 * tests and local development. Point Clerk's SDK (or m2m-guard's client) at `emulator.url`.
 */
export {
  type DefaultMachineName,
  type Emulator,
  type EmulatorCalls,
  startEmulator,
} from './emulator.js';
export {
  FAULT_KINDS,
  type FailNextOptions,
  type FaultKind,
  type M2MOperation,
} from './faults.js';
export { M2M_JWT_CATEGORY, type RsaJwk } from './jwt.js';
export type {
  EmulatedMachine,
  EmulatorOptions,
  MachineConfig,
  RateLimitOptions,
} from './options.js';
