import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { newInstanceId } from './ids.js';

/** Clerk's JWT category for M2M tokens; the SDK rejects other `cat` values as M2M tokens. */
export const M2M_JWT_CATEGORY = 'cl_B7d4PD333AAA';

/** Claims the emulator sets itself; custom claims with these names are dropped. */
export const RESERVED_CLAIMS = ['iss', 'sub', 'aud', 'scopes', 'iat', 'nbf', 'exp', 'jti'] as const;

/** One entry of `GET /v1/jwks`. */
export interface RsaJwk {
  kty: 'RSA';
  n: string;
  e: string;
  kid: string;
  alg: 'RS256';
  use: 'sig';
}

/** The instance signing key: one RSA pair per emulator, like one per Clerk instance. */
export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKeyPem: string;
  jwk: RsaJwk;
}

/** Made on first use (a JWT minted, the JWKS read): most emulators never need one. */
export function createSigningKey(): SigningKey {
  // 2048 bits: the size Clerk uses, and the only size the SDK's `jwtKey` PEM shortcut parses.
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = newInstanceId();
  const exported = publicKey.export({ format: 'jwk' });
  return {
    kid,
    privateKey,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    jwk: {
      kty: 'RSA',
      n: String(exported.n),
      e: String(exported.e),
      kid,
      alg: 'RS256',
      use: 'sig',
    },
  };
}

const base64url = (value: string | Buffer): string => Buffer.from(value).toString('base64url');

export interface M2MJwtFields {
  issuer: string;
  tokenId: string;
  subject: string;
  scopes: readonly string[];
  claims: Record<string, unknown> | null;
  /** Seconds since epoch. */
  issuedAt: number;
  /** Seconds since epoch. */
  expiresAt: number;
}

/** Signs an M2M JWT shaped like Clerk's (header `cat`, `aud` + space-joined `scopes`, `jti`). */
export function signM2MJwt(key: SigningKey, fields: M2MJwtFields): string {
  const header = { alg: 'RS256', typ: 'JWT', kid: key.kid, cat: M2M_JWT_CATEGORY };
  const custom: Record<string, unknown> = { ...(fields.claims ?? {}) };
  for (const name of RESERVED_CLAIMS) delete custom[name];
  const payload = {
    ...custom,
    iss: fields.issuer,
    sub: fields.subject,
    aud: [...fields.scopes],
    scopes: fields.scopes.join(' '),
    iat: fields.issuedAt,
    nbf: fields.issuedAt - 10,
    exp: fields.expiresAt,
    jti: fields.tokenId,
  };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  const signature = sign('sha256', Buffer.from(input), key.privateKey);
  return `${input}.${base64url(signature)}`;
}
