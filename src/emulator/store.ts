import { M2M_TOKEN_OBJECT, type M2MTokenJson } from '../shared/wire.js';
import { newTokenId, newTokenSecret } from './ids.js';
import type { EmulatedMachine } from './options.js';

/** A stored opaque token. JWT-format tokens are never stored, as at Clerk. */
export interface StoredToken {
  id: string;
  /** The opaque token string. Kept in clear because reuse (`min_remaining_ttl_seconds`) returns it. */
  secret: string;
  subject: string;
  scopes: string[];
  claims: Record<string, unknown> | null;
  revoked: boolean;
  revocationReason: string | null;
  /** ms since epoch, or null for a token that never expires. */
  expiration: number | null;
  lastUsedAt: number | null;
  createdAt: number;
  updatedAt: number;
  /** Creation order, to break ties between tokens created in the same millisecond. */
  seq: number;
}

export function isExpired(token: { expiration: number | null }, now: number): boolean {
  return token.expiration !== null && now >= token.expiration;
}

/** The wire form; `expired` is computed at read time, `token` only when asked (create). */
export function toJson(token: StoredToken, now: number, withSecret = false): M2MTokenJson {
  const json: M2MTokenJson = {
    object: M2M_TOKEN_OBJECT,
    id: token.id,
    subject: token.subject,
    scopes: [...token.scopes],
    claims: token.claims === null ? null : structuredClone(token.claims),
    revoked: token.revoked,
    revocation_reason: token.revocationReason,
    expired: isExpired(token, now),
    expiration: token.expiration,
    last_used_at: token.lastUsedAt,
    created_at: token.createdAt,
    updated_at: token.updatedAt,
  };
  if (withSecret) json.token = token.secret;
  return json;
}

/** The instance's state: machines (fixed for the emulator's life) and opaque tokens. */
export class Store {
  readonly machines: readonly EmulatedMachine[];
  private readonly byId = new Map<string, StoredToken>();
  private readonly bySecret = new Map<string, StoredToken>();
  private seq = 0;

  constructor(machines: readonly EmulatedMachine[]) {
    this.machines = machines;
  }

  machineByKey(secretKey: string): EmulatedMachine | undefined {
    return this.machines.find((m) => m.secretKey === secretKey);
  }

  machineById(id: string): EmulatedMachine | undefined {
    return this.machines.find((m) => m.id === id);
  }

  insert(fields: {
    subject: string;
    scopes: string[];
    claims: Record<string, unknown> | null;
    expiration: number | null;
    now: number;
  }): StoredToken {
    let id = newTokenId();
    while (this.byId.has(id)) id = newTokenId();
    const token: StoredToken = {
      id,
      secret: newTokenSecret(),
      subject: fields.subject,
      scopes: [...fields.scopes],
      claims: fields.claims === null ? null : structuredClone(fields.claims),
      revoked: false,
      revocationReason: null,
      expiration: fields.expiration,
      lastUsedAt: null,
      createdAt: fields.now,
      updatedAt: fields.now,
      seq: this.seq++,
    };
    this.byId.set(token.id, token);
    this.bySecret.set(token.secret, token);
    return token;
  }

  get(id: string): StoredToken | undefined {
    return this.byId.get(id);
  }

  getBySecret(secret: string): StoredToken | undefined {
    return this.bySecret.get(secret);
  }

  /** Tokens of one subject, newest first; same-millisecond ties by creation order. */
  bySubject(subject: string): StoredToken[] {
    return [...this.byId.values()]
      .filter((t) => t.subject === subject)
      .sort((a, b) => b.createdAt - a.createdAt || b.seq - a.seq);
  }

  clear(): void {
    this.byId.clear();
    this.bySecret.clear();
  }
}
