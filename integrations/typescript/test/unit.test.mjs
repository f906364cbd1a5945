// Unit tests without a server: canonical JSON (RFC 8785) and the access token checks against a
// key made here, one failed check at a time.

import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";
import { describe, test } from "node:test";

import {
  canonicalJson,
  checkExecution,
  ExecutionMismatch,
  InvalidToken,
  StaticJwks,
} from "../dist/index.js";

describe("canonicalJson (RFC 8785)", () => {
  test("the RFC's own example (section 3.2.2 and appendix)", () => {
    const input = {
      numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001],
      string: "\u20ac$\u000f\nA'B\"\\\\\"/",
      literals: [null, true, false],
    };
    assert.equal(
      canonicalJson(input),
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  test("members sorted by UTF-16 code units, recursively (RFC 8785 section 3.2.3)", () => {
    const input = { "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis" };
    // (Read from the text: JSON.parse would put the integer-like "1" first again.)
    const text = canonicalJson(input);
    const order = ["Carriage Return", "One", "Control", "Latin Small", "Euro Sign", "Emoji", "Hebrew"].map((v) => text.indexOf(v));
    assert.ok(order.every((pos, i) => pos > 0 && (i === 0 || pos > order[i - 1])), text);
    assert.equal(canonicalJson({ b: { d: 1, c: 2 }, a: [{ z: 0, y: 1 }] }), '{"a":[{"y":1,"z":0}],"b":{"c":2,"d":1}}');
  });

  test("what JSON cannot hold is refused, not dropped", () => {
    assert.throws(() => canonicalJson({ a: undefined }), TypeError);
    assert.throws(() => canonicalJson([NaN]), TypeError);
    assert.throws(() => canonicalJson({ n: 1n }), TypeError);
    assert.throws(() => canonicalJson(new Date(0)), TypeError);
    const cyclic = {};
    cyclic.self = cyclic;
    assert.throws(() => canonicalJson(cyclic), TypeError);
    assert.equal(canonicalJson({ x: [1.0, -0] }), '{"x":[1,0]}');
  });
});

const b64u = (b) => Buffer.from(b).toString("base64url");

async function keyPair() {
  const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", kp.publicKey);
  return { kp, jwk: { kty: "OKP", crv: "Ed25519", x: jwk.x, kid: "k1", alg: "EdDSA", use: "sig" } };
}

async function sign(kp, header, claims) {
  const signing = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, kp.privateKey, new TextEncoder().encode(signing));
  return `${signing}.${b64u(new Uint8Array(sig))}`;
}

describe("checkExecution with a pinned JWKS", async () => {
  const { kp, jwk } = await keyPair();
  const keys = new StaticJwks({ keys: [jwk] });
  const now = Math.floor(Date.now() / 1000);
  const action = [{ type: "payment_initiation", instructedAmount: { amount: "10.00", currency: "EUR" } }];
  const claims = { iss: "https://cs.example", aud: "agent", client_id: "agent", exp: now + 300, iat: now, jti: "j1", authorization_details: action };
  const header = { alg: "EdDSA", typ: "at+jwt", kid: "k1" };
  const expect = { keys, issuer: "https://cs.example", clientId: "agent" };

  test("a valid token for the same action passes, whatever the member order", async () => {
    const t = await sign(kp, header, claims);
    const reordered = [{ instructedAmount: { currency: "EUR", amount: "10.00" }, type: "payment_initiation" }];
    const got = await checkExecution(t, reordered, expect);
    assert.equal(got.jti, "j1");
  });

  test("a different action is ExecutionMismatch, naming both", async () => {
    const t = await sign(kp, header, claims);
    const other = [{ type: "payment_initiation", instructedAmount: { amount: "11.00", currency: "EUR" } }];
    await assert.rejects(checkExecution(t, other, expect), (e) => {
      assert.ok(e instanceof ExecutionMismatch);
      assert.equal(e.code, "execution_mismatch");
      assert.match(e.approved, /10\.00/);
      assert.match(e.attempted, /11\.00/);
      return true;
    });
    // An extra member is a different action too.
    await assert.rejects(checkExecution(t, [{ ...action[0], memo: "x" }], expect), ExecutionMismatch);
  });

  const bad = {
    "wrong issuer": [header, { ...claims, iss: "https://evil.example" }, /iss/],
    "another client's token": [header, { ...claims, aud: "other", client_id: "other" }, /aud/],
    expired: [header, { ...claims, exp: now - 3600 }, /expired/],
    "an ID token (typ JWT)": [{ ...header, typ: "JWT" }, claims, /typ/],
    "alg none": [{ ...header, alg: "none" }, claims, /alg/],
    "unknown kid": [{ ...header, kid: "k2" }, claims, /kid/],
    "no authorization_details": [header, { ...claims, authorization_details: undefined }, /authorization_details/],
  };
  for (const [name, [h, c, why]] of Object.entries(bad)) {
    test(`refused: ${name}`, async () => {
      const t = await sign(kp, h, c);
      await assert.rejects(checkExecution(t, action, expect), (e) => {
        assert.ok(e instanceof InvalidToken, `${e}`);
        assert.match(e.message, why);
        return true;
      });
    });
  }

  test("refused: a signature by another key, a payload edited after signing, garbage", async () => {
    const other = await keyPair();
    await assert.rejects(checkExecution(await sign(other.kp, header, claims), action, expect), /signature/);
    const t = await sign(kp, header, claims);
    const [h, , s] = t.split(".");
    const edited = `${h}.${b64u(JSON.stringify({ ...claims, authorization_details: [{ type: "payment_initiation", instructedAmount: { amount: "9999.00", currency: "EUR" } }] }))}.${s}`;
    await assert.rejects(checkExecution(edited, action, expect), (e) => e instanceof InvalidToken && /signature/.test(e.message));
    await assert.rejects(checkExecution("not-a-jwt", action, expect), InvalidToken);
    await assert.rejects(checkExecution("", action, expect), InvalidToken);
  });
});
