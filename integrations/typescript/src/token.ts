/**
 * The agent-side half of the execution check: verify a Countersign access token (a compact JWS,
 * RFC 7515, EdDSA with Ed25519, RFC 8037, header `typ: at+jwt`, RFC 9068) against the server's
 * JWKS, and check that the `authorization_details` it approves equal, by canonical JSON
 * (RFC 8785), the action about to run.
 *
 * Written on Node's WebCrypto rather than a JOSE library: the server signs with one fixed
 * algorithm and header, so the only algorithm accepted is EdDSA and there is no negotiation to
 * get wrong.
 */

import { webcrypto } from "node:crypto";

import { ExecutionMismatch, InvalidToken } from "./errors.js";
import { canonicalJson } from "./jcs.js";

/** One key of a JWKS (RFC 7517), as the server publishes it. */
export interface Jwk {
  kty: string;
  crv?: string;
  x?: string;
  kid?: string;
  alg?: string;
  use?: string;
}

/** The claims of a Countersign access token. */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  client_id: string;
  exp: number;
  iat: number;
  jti: string;
  scope: string;
  authorization_details: unknown;
  request_id: string;
  statement_hash: string;
  log_origin: string;
  log_index: number;
  leaf_hash: string;
  [claim: string]: unknown;
}

/** Where the verification keys come from: `keys(kid)` returns the key with that id, or none. */
export interface KeySource {
  key(kid: string): Promise<Jwk | undefined>;
}

/** What a token must match besides its signature. */
export interface TokenExpectations {
  /** The server's issuer (its discovery `issuer`). */
  issuer: string;
  /** This client's id: the token's `aud` and `client_id` must name it. */
  clientId?: string;
  /** Seconds of clock skew tolerated on `exp` and `iat` (default 30). */
  clockToleranceSeconds?: number;
  /** The current time in seconds (for tests); default the system clock. */
  now?: number;
}

const MAX_TOKEN_BYTES = 16 * 1024;

function b64uDecode(s: string, what: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new InvalidToken("invalid_token", `${what} is not base64url`);
  return new Uint8Array(Buffer.from(s, "base64url"));
}

function parseJsonObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new InvalidToken("invalid_token", `${what} is not JSON`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new InvalidToken("invalid_token", `${what} is not a JSON object`);
  }
  return v as Record<string, unknown>;
}

/**
 * Verifies `token` and returns its claims. Throws `InvalidToken` naming the failed check: the
 * form (three base64url parts), the header (`alg` EdDSA, `typ` at+jwt, a `kid`), the key (in the
 * JWKS, OKP/Ed25519), the signature, `iss`, `aud`/`client_id`, `exp` and `iat`.
 */
export async function verifyAccessToken(
  token: string,
  keys: KeySource,
  expect: TokenExpectations,
): Promise<AccessTokenClaims> {
  if (typeof token !== "string" || token.length === 0) throw new InvalidToken("invalid_token", "no token");
  if (token.length > MAX_TOKEN_BYTES) throw new InvalidToken("invalid_token", "token too long");
  const parts = token.split(".");
  if (parts.length !== 3) throw new InvalidToken("invalid_token", "not a compact JWS (three parts)");
  const [h, p, s] = parts as [string, string, string];
  const header = parseJsonObject(b64uDecode(h, "header"), "header");
  if (header.alg !== "EdDSA") throw new InvalidToken("invalid_token", "alg is not EdDSA");
  if (header.typ !== "at+jwt") throw new InvalidToken("invalid_token", "typ is not at+jwt: not an access token");
  if (header.crit !== undefined) throw new InvalidToken("invalid_token", "crit header parameters are not supported");
  if (typeof header.kid !== "string") throw new InvalidToken("invalid_token", "no kid in the header");
  const jwk = await keys.key(header.kid);
  if (!jwk) throw new InvalidToken("invalid_token", `kid ${header.kid} is not in the server's JWKS`);
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new InvalidToken("invalid_token", "the JWKS key is not an Ed25519 key");
  }
  if (jwk.alg !== undefined && jwk.alg !== "EdDSA") throw new InvalidToken("invalid_token", "the JWKS key is not for EdDSA");
  const sig = b64uDecode(s, "signature");
  if (sig.length !== 64) throw new InvalidToken("invalid_token", "signature is not 64 bytes");
  let ok: boolean;
  try {
    const key = await webcrypto.subtle.importKey(
      "jwk",
      { kty: "OKP", crv: "Ed25519", x: jwk.x },
      { name: "Ed25519" },
      false,
      ["verify"],
    );
    ok = await webcrypto.subtle.verify({ name: "Ed25519" }, key, sig, new TextEncoder().encode(`${h}.${p}`));
  } catch (e) {
    throw new InvalidToken("invalid_token", "the signature could not be checked", { cause: e });
  }
  if (!ok) throw new InvalidToken("invalid_token", "signature does not verify with the server's key");
  const claims = parseJsonObject(b64uDecode(p, "payload"), "payload");
  if (claims.iss !== expect.issuer) throw new InvalidToken("invalid_token", "iss is not this server");
  if (expect.clientId !== undefined) {
    const aud = claims.aud;
    const auds = Array.isArray(aud) ? aud : [aud];
    if (!auds.includes(expect.clientId)) throw new InvalidToken("invalid_token", "aud does not name this client");
    if (claims.client_id !== expect.clientId) throw new InvalidToken("invalid_token", "client_id is not this client");
  }
  const now = expect.now ?? Math.floor(Date.now() / 1000);
  const skew = expect.clockToleranceSeconds ?? 30;
  if (typeof claims.exp !== "number") throw new InvalidToken("invalid_token", "no exp");
  if (now >= claims.exp + skew) throw new InvalidToken("invalid_token", "token expired");
  if (typeof claims.iat === "number" && claims.iat > now + skew) {
    throw new InvalidToken("invalid_token", "token issued in the future");
  }
  if (claims.authorization_details === undefined) {
    throw new InvalidToken("invalid_token", "no authorization_details: the token approves no action");
  }
  return claims as AccessTokenClaims;
}

/**
 * Throws `ExecutionMismatch` unless the approved `authorization_details` equal `action` by
 * canonical JSON (RFC 8785): member order and number spelling do not matter, every value does.
 */
export function checkSameAction(approved: unknown, action: unknown): void {
  let attempted: string;
  try {
    attempted = canonicalJson(action);
  } catch (e) {
    throw new ExecutionMismatch(canonicalJson(approved), `<not JSON: ${(e as Error).message}>`);
  }
  const want = canonicalJson(approved);
  if (want !== attempted) throw new ExecutionMismatch(want, attempted);
}

/** A JWKS fetched from a URL and cached; refetched (at most every `minRefreshMs`) for an unknown `kid`, so a key rotation is picked up. */
export class RemoteJwks implements KeySource {
  private keys: Jwk[] | undefined;
  private fetchedAt = 0;
  constructor(
    private readonly url: string,
    private readonly fetchJson: (url: string) => Promise<unknown>,
    private readonly minRefreshMs = 30_000,
  ) {}

  async key(kid: string): Promise<Jwk | undefined> {
    const find = () => this.keys?.find((k) => k.kid === kid);
    if (!this.keys || (!find() && Date.now() - this.fetchedAt >= this.minRefreshMs)) {
      const doc = (await this.fetchJson(this.url)) as { keys?: unknown };
      if (!doc || !Array.isArray(doc.keys)) throw new InvalidToken("invalid_token", "the server's JWKS has no keys array");
      this.keys = doc.keys as Jwk[];
      this.fetchedAt = Date.now();
    }
    return find();
  }
}

/** A fixed JWKS (for an executor that pins the server's keys). */
export class StaticJwks implements KeySource {
  constructor(private readonly jwks: { keys: Jwk[] }) {}
  async key(kid: string): Promise<Jwk | undefined> {
    return this.jwks.keys.find((k) => k.kid === kid);
  }
}
