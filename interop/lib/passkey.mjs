// A software passkey (ES256) written against node's WebCrypto only, independent of the Rust
// code: it builds authenticatorData, clientDataJSON and a `none` attestation object by hand,
// signs authenticatorData || SHA-256(clientDataJSON) and DER-encodes the signature, as a
// platform authenticator and browser would.

import { webcrypto as crypto } from "node:crypto";

const subtle = crypto.subtle;

export const b64u = {
  enc: (buf) => Buffer.from(buf).toString("base64url"),
  dec: (s) => new Uint8Array(Buffer.from(s, "base64url")),
};

export const hex = (buf) => Buffer.from(buf).toString("hex");

export async function sha256(data) {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return new Uint8Array(await subtle.digest("SHA-256", bytes));
}

function concat(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---- a minimal CBOR encoder (RFC 8949): the types an attestation object needs ----

function cborHead(major, n) {
  if (n < 24) return Uint8Array.of((major << 5) | n);
  if (n < 0x100) return Uint8Array.of((major << 5) | 24, n);
  if (n < 0x10000) return Uint8Array.of((major << 5) | 25, n >> 8, n & 0xff);
  return Uint8Array.of((major << 5) | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

/** Encodes integers, strings, Uint8Arrays, arrays and Maps (keys kept in insertion order). */
export function cbor(v) {
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new TypeError("cbor: integers only");
    return v >= 0 ? cborHead(0, v) : cborHead(1, -1 - v);
  }
  if (typeof v === "string") {
    const b = new TextEncoder().encode(v);
    return concat(cborHead(3, b.length), b);
  }
  if (v instanceof Uint8Array) return concat(cborHead(2, v.length), v);
  if (Array.isArray(v)) return concat(cborHead(4, v.length), ...v.map(cbor));
  if (v instanceof Map) {
    const parts = [cborHead(5, v.size)];
    for (const [k, x] of v) parts.push(cbor(k), cbor(x));
    return concat(...parts);
  }
  throw new TypeError(`cbor: unsupported value ${v}`);
}

/** DER-encodes an ECDSA signature given as r || s (what WebCrypto returns). */
export function derSignature(raw) {
  const int = (b) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = b.slice(i);
    if (v[0] & 0x80) v = concat(Uint8Array.of(0), v);
    return concat(Uint8Array.of(0x02, v.length), v);
  };
  const half = raw.length / 2;
  const body = concat(int(raw.slice(0, half)), int(raw.slice(half)));
  return concat(Uint8Array.of(0x30, body.length), body);
}

export const FLAGS = { UP: 0x01, UV: 0x04, AT: 0x40 };

/** RFC 8785 (JCS) for the JSON the statements use (strings, integers, arrays, objects). */
export function jcs(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
}

export class SoftPasskey {
  /** A new ES256 passkey for `rpId`, used on pages of `origin`. */
  static async create(rpId, origin) {
    const keys = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    const p = new SoftPasskey();
    p.rpId = rpId;
    p.origin = origin;
    p.keys = keys;
    p.credentialId = crypto.getRandomValues(new Uint8Array(32));
    p.signCount = 0;
    return p;
  }

  async cosePublicKey() {
    const jwk = await subtle.exportKey("jwk", this.keys.publicKey);
    // COSE_Key: kty EC2 (1: 2), alg ES256 (3: -7), crv P-256 (-1: 1), x (-2), y (-3).
    return cbor(new Map([[1, 2], [3, -7], [-1, 1], [-2, b64u.dec(jwk.x)], [-3, b64u.dec(jwk.y)]]));
  }

  clientDataJSON(type, challenge) {
    // Member order as Chromium writes it.
    return new TextEncoder().encode(
      JSON.stringify({ type, challenge: b64u.enc(challenge), origin: this.origin, crossOrigin: false }),
    );
  }

  async authenticatorData(flags, attested) {
    const head = concat(
      await sha256(this.rpId),
      Uint8Array.of(flags),
      Uint8Array.of((this.signCount >>> 24) & 0xff, (this.signCount >> 16) & 0xff, (this.signCount >> 8) & 0xff, this.signCount & 0xff),
    );
    if (!attested) return head;
    const aaguid = new Uint8Array(16);
    const idLen = Uint8Array.of(this.credentialId.length >> 8, this.credentialId.length & 0xff);
    return concat(head, aaguid, idLen, this.credentialId, await this.cosePublicKey());
  }

  /** navigator.credentials.create() for server-sent options: the JSON the page would send. */
  async register(publicKey) {
    if (publicKey.rp?.id && publicKey.rp.id !== this.rpId) {
      throw new Error(`registration for RP ${publicKey.rp.id}, passkey is for ${this.rpId}`);
    }
    const challenge = b64u.dec(publicKey.challenge);
    const cdj = this.clientDataJSON("webauthn.create", challenge);
    const authData = await this.authenticatorData(FLAGS.UP | FLAGS.UV | FLAGS.AT, true);
    const att = cbor(new Map([["fmt", "none"], ["attStmt", new Map()], ["authData", authData]]));
    return {
      id: b64u.enc(this.credentialId),
      rawId: b64u.enc(this.credentialId),
      type: "public-key",
      response: { attestationObject: b64u.enc(att), clientDataJSON: b64u.enc(cdj) },
    };
  }

  /**
   * navigator.credentials.get() over `challenge` (bytes): the JSON the page would send.
   * `bogusSignature` flips one signature bit, making an assertion that must be refused.
   */
  async assert(challenge, { flags = FLAGS.UP | FLAGS.UV, bogusSignature = false } = {}) {
    const cdj = this.clientDataJSON("webauthn.get", challenge);
    const authData = await this.authenticatorData(flags, false);
    const signed = concat(authData, await sha256(cdj));
    const raw = new Uint8Array(await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, this.keys.privateKey, signed));
    const sig = derSignature(raw);
    if (bogusSignature) sig[sig.length - 1] ^= 0x01;
    return {
      id: b64u.enc(this.credentialId),
      rawId: b64u.enc(this.credentialId),
      type: "public-key",
      response: {
        authenticatorData: b64u.enc(authData),
        clientDataJSON: b64u.enc(cdj),
        signature: b64u.enc(sig),
        userHandle: null,
      },
    };
  }
}
