// Interop with a standard OpenID CIBA client: the npm package `openid-client` 6.x, unchanged,
// drives the real `countersign` binary (discovery, initiateBackchannelAuthentication,
// pollBackchannelAuthenticationGrant), while the approver decides with a software passkey made
// with node's WebCrypto. The ID token must validate inside openid-client, signature included
// (enableNonRepudiationChecks fetches the JWKS and checks the JWS).

import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";
import { after, before, describe, test } from "node:test";

import * as client from "openid-client";

import { ApiApprover } from "../lib/approver.mjs";
import { b64u } from "../lib/passkey.mjs";
import { writeFile } from "node:fs/promises";
import path from "node:path";

import { runTool, Server, verifierBinary } from "../lib/server.mjs";

const CLIENT_ID = "interop-agent";
const TYPES = ["payment_initiation", "shell_command", "deploy"];
const CLIENT_SECRET = "interop-secret-0123456789";
const APPROVER = "appr-alice";
const DETAILS = [
  {
    type: "payment_initiation",
    instructedAmount: { currency: "EUR", amount: "42.00" },
    creditorName: "ACME Ltd",
    creditorAccount: { iban: "DE02100100109307118603" },
  },
];

/** Checks a compact JWS (EdDSA) with the server's JWKS using WebCrypto; returns its claims. */
async function verifyEdDsaJwt(jwksUri, jwt) {
  const [h, p, s] = jwt.split(".");
  const header = JSON.parse(Buffer.from(h, "base64url"));
  assert.equal(header.alg, "EdDSA");
  const jwks = await (await fetch(jwksUri)).json();
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} is in the JWKS`);
  const key = await crypto.subtle.importKey("jwk", { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, { name: "Ed25519" }, false, ["verify"]);
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, b64u.dec(s), new TextEncoder().encode(`${h}.${p}`));
  assert.ok(ok, "JWS signature verifies with the JWKS");
  return JSON.parse(Buffer.from(p, "base64url"));
}

describe("openid-client 6.x against countersign (CIBA poll)", { timeout: 120_000 }, () => {
  let server;
  let approver;
  let config;
  let evidence; // the approved flow's evidence bundle (JSON text)

  before(async () => {
    // The action types these tests ask for; discovery must list exactly these.
    server = await Server.start({ extraArgs: ["--authorization-details-type", TYPES.join(",")] });
    await server.addClient(CLIENT_ID, CLIENT_SECRET);
    const link = await server.addApprover(APPROVER, "alice@example.com", "Alice Example");
    assert.ok(link.startsWith(`${server.publicUrl}/enrol/`), `enrolment link ${link} is on the public URL`);
    approver = await ApiApprover.create(server);
    const enrolled = await approver.enrol(link);
    assert.equal(enrolled.approver_id, APPROVER);
    await approver.signIn();
    config = await client.discovery(
      new URL(server.publicUrl),
      CLIENT_ID,
      undefined,
      client.ClientSecretBasic(CLIENT_SECRET),
      { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks], timeout: 10 },
    );
  }, { timeout: 60_000 });

  after(async () => {
    await server?.stop();
  }, { timeout: 30_000 });

  test("discovery metadata is what a CIBA client needs", () => {
    const m = config.serverMetadata();
    assert.equal(m.issuer, server.publicUrl);
    assert.equal(m.backchannel_authentication_endpoint, `${server.publicUrl}/bc-authorize`);
    assert.equal(m.token_endpoint, `${server.publicUrl}/token`);
    assert.equal(m.jwks_uri, `${server.publicUrl}/jwks.json`);
    assert.deepEqual([...m.backchannel_token_delivery_modes_supported].sort(), ["ping", "poll", "push"]);
    assert.ok(m.grant_types_supported.includes("urn:openid:params:grant-type:ciba"));
    assert.ok(m.token_endpoint_auth_methods_supported.includes("client_secret_basic"));
    assert.ok(m.id_token_signing_alg_values_supported.length > 0);
    assert.deepEqual([...m.authorization_details_types_supported].sort(), [...TYPES].sort());
  });

  test("a client id with a line break cannot forge a line of the server's log", async () => {
    // Basic credentials are form-urlencoded (RFC 6749 section 2.3.1): %0A is a line break.
    const r = await server.clientPost("/token", "nobody\nINJECTED level=ERROR admin token leaked", "x", {
      grant_type: "urn:openid:params:grant-type:ciba",
      auth_req_id: "x",
    });
    assert.equal(r.status, 401, JSON.stringify(r.body));
    await new Promise((res) => setTimeout(res, 200));
    const lines = server.stderr.split("\n");
    assert.ok(!lines.some((l) => l.startsWith("INJECTED")), "no forged log line");
    assert.ok(server.stderr.includes('client_id="nobody\\nINJECTED'), "the id is logged escaped, on its own line");
  });

  test("approved: tokens arrive through pollBackchannelAuthenticationGrant and the ID token validates", async () => {
    const checkpointBefore = await server.checkpoint();
    const bindingMessage = "Pay 42.00 EUR to ACME";
    const ciba = await client.initiateBackchannelAuthentication(config, {
      scope: "openid payments",
      login_hint: "alice@example.com",
      binding_message: bindingMessage,
      authorization_details: JSON.stringify(DETAILS),
      requested_expiry: "120",
    });
    assert.equal(typeof ciba.auth_req_id, "string");
    assert.ok(b64u.dec(ciba.auth_req_id).length >= 16, "auth_req_id carries at least 128 bits");
    assert.equal(ciba.expires_in, 120);
    assert.ok(ciba.interval >= 1);

    // The agent polls (openid-client waits `interval` between polls) while the approver decides.
    const polled = client.pollBackchannelAuthenticationGrant(config, ciba, undefined, {
      signal: AbortSignal.timeout(60_000),
    });
    const req = await approver.waitForRequest(bindingMessage);
    assert.equal(req.client_id, CLIENT_ID);
    assert.deepEqual(req.authorization_details, DETAILS);
    const { finish, statementHash } = await approver.decide(req.request_id, "approve");
    assert.equal(finish.status, 201, `decide/finish: ${JSON.stringify(finish.body)}`);
    assert.equal(finish.body.decision, "approve");

    const tokens = await polled;
    assert.equal(tokens.token_type.toLowerCase(), "bearer");
    assert.ok(tokens.access_token);
    assert.ok(tokens.id_token);

    // The ID token was validated by openid-client (issuer, audience, expiry, signature); its claims:
    const claims = tokens.claims();
    assert.equal(claims.iss, server.publicUrl);
    assert.equal(claims.sub, APPROVER);
    assert.equal(claims.aud, CLIENT_ID);
    assert.equal(claims["urn:openid:params:jwt:claim:auth_req_id"], ciba.auth_req_id);

    // The access token is bound to exactly what was approved.
    const at = await verifyEdDsaJwt(`${server.url}/jwks.json`, tokens.access_token);
    assert.equal(at.iss, server.publicUrl);
    assert.equal(at.sub, APPROVER);
    assert.equal(at.client_id, CLIENT_ID);
    assert.equal(at.scope, "openid payments");
    assert.deepEqual(at.authorization_details, DETAILS);
    assert.equal(at.statement_hash, statementHash);
    assert.equal(at.log_index, finish.body.log_index);
    assert.equal(at.leaf_hash, finish.body.leaf_hash);
    assert.ok(at.exp > at.iat);

    // The decision is in the log, covered by a checkpoint.
    const checkpointAfter = await server.checkpoint();
    assert.ok(checkpointAfter.size > checkpointBefore.size, "the tree grew by the decision");
    assert.ok(checkpointAfter.size > finish.body.log_index);

    // Tokens are issued once: a second token request is invalid_grant.
    const again = await server.clientPost("/token", CLIENT_ID, CLIENT_SECRET, {
      grant_type: "urn:openid:params:grant-type:ciba",
      auth_req_id: ciba.auth_req_id,
    });
    assert.equal(again.status, 400);
    assert.equal(again.body.error, "invalid_grant");

    // The client can fetch the evidence bundle of its request.
    const ev = await fetch(`${server.url}/v1/evidence/${encodeURIComponent(ciba.auth_req_id)}`, {
      headers: { authorization: "Basic " + Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64") },
    });
    evidence = await ev.text();
    assert.equal(ev.status, 200, `evidence: ${evidence}`);
    const bundle = JSON.parse(evidence);
    assert.equal(bundle.statement.request_id, req.request_id);
    assert.equal(bundle.decision.index, finish.body.log_index);
  });

  test("the approved flow's evidence bundle verifies with countersign-verify, and not once altered", async (t) => {
    const verify = verifierBinary();
    if (!verify) {
      t.skip("countersign-verify not built (cargo build -p countersign-verify, or set COUNTERSIGN_VERIFY_BIN)");
      return;
    }
    assert.ok(evidence, "the approved test fetched a bundle");
    const logKey = await server.vkey();
    const file = path.join(server.dir, "evidence.json");
    await writeFile(file, evidence);
    // The relying party is pinned (the server's --rp-id); without a pin the tool refuses to
    // guess (exit 2), and --trust-bundle-rp says loudly that it took the bundle's word.
    const ok = await runTool(verify, ["bundle", file, "--log-key", logKey, "--rp-id", "localhost"]);
    assert.equal(ok.code, 0, `countersign-verify bundle: ${ok.stdout}${ok.stderr}`);
    assert.match(ok.stdout, /OK/);
    const unpinned = await runTool(verify, ["bundle", file, "--log-key", logKey]);
    assert.equal(unpinned.code, 2, `no --rp-id: ${unpinned.stdout}${unpinned.stderr}`);
    assert.match(unpinned.stderr, /--trust-bundle-rp/);
    const trusted = await runTool(verify, ["bundle", file, "--log-key", logKey, "--trust-bundle-rp"]);
    assert.equal(trusted.code, 0, `--trust-bundle-rp: ${trusted.stdout}${trusted.stderr}`);
    assert.match(trusted.stdout, /RELYING PARTY NOT PINNED/);
    // The execution check: the action about to run must be exactly the approved one.
    const action = path.join(server.dir, "action.json");
    await writeFile(action, JSON.stringify(DETAILS));
    const exec = await runTool(verify, ["bundle", file, "--log-key", logKey, "--rp-id", "localhost", "--action", action]);
    assert.equal(exec.code, 0, `--action with the approved details: ${exec.stdout}${exec.stderr}`);
    const drifted = structuredClone(DETAILS);
    drifted[0].instructedAmount.amount = "4200.00";
    await writeFile(action, JSON.stringify(drifted));
    const bad = await runTool(verify, ["bundle", file, "--log-key", logKey, "--rp-id", "localhost", "--action", action]);
    assert.equal(bad.code, 1, `an action that drifted from the approved one is refused: ${bad.stdout}${bad.stderr}`);
    assert.match(bad.stdout, /INVALID/);
    // Any changed statement field breaks the bundle.
    const fields = {
      binding_message: "Pay 4200.00 EUR to ACME",
      client_id: "another-agent",
      approver_id: "appr-mallory",
      scope: "openid admin",
      expires_at: JSON.parse(evidence).statement.expires_at + 3600,
    };
    for (const [field, value] of Object.entries(fields)) {
      const b = JSON.parse(evidence);
      b.statement[field] = value;
      const f = path.join(server.dir, `evidence-${field}.json`);
      await writeFile(f, JSON.stringify(b));
      const r = await runTool(verify, ["bundle", f, "--log-key", logKey, "--rp-id", "localhost"]);
      assert.equal(r.code, 1, `a bundle with statement.${field} changed must fail as INVALID: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /INVALID/);
    }
    const b = JSON.parse(evidence);
    b.statement.authorization_details[0].creditorName = "Mallory";
    const f = path.join(server.dir, "evidence-details.json");
    await writeFile(f, JSON.stringify(b));
    const r = await runTool(verify, ["bundle", f, "--log-key", logKey, "--rp-id", "localhost"]);
    assert.equal(r.code, 1, `a bundle with authorization_details changed must fail as INVALID: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /INVALID/);
  });

  test("denied: pollBackchannelAuthenticationGrant rejects with access_denied", async () => {
    const bindingMessage = "Delete the production database";
    const ciba = await client.initiateBackchannelAuthentication(config, {
      scope: "openid",
      login_hint: APPROVER,
      binding_message: bindingMessage,
      authorization_details: JSON.stringify([{ type: "shell_command", command: "dropdb prod" }]),
    });
    const polled = client.pollBackchannelAuthenticationGrant(config, ciba, undefined, {
      signal: AbortSignal.timeout(60_000),
    });
    // Keep the rejection handled until it is awaited below.
    polled.catch(() => {});
    const req = await approver.waitForRequest(bindingMessage);
    const { finish } = await approver.decide(req.request_id, "deny");
    assert.equal(finish.status, 201, `decide/finish: ${JSON.stringify(finish.body)}`);
    await assert.rejects(polled, (err) => {
      assert.ok(err instanceof client.ResponseBodyError, `expected a ResponseBodyError, got ${err}`);
      assert.equal(err.error, "access_denied");
      return true;
    });
  });

  test("control: openid-client refuses an ID token whose signature was altered in transit", async () => {
    // Same client, but a documented customFetch flips one bit of the ID token's signature in the
    // token response: proves the ID token check above really covers the signature.
    const tampering = await client.discovery(
      new URL(server.publicUrl),
      CLIENT_ID,
      undefined,
      client.ClientSecretBasic(CLIENT_SECRET),
      { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks], timeout: 10 },
    );
    tampering[client.customFetch] = async (url, options) => {
      const r = await fetch(url, options);
      if (!String(url).endsWith("/token") || r.status !== 200) return r;
      const body = await r.json();
      const [h, p, s] = body.id_token.split(".");
      const sig = b64u.dec(s);
      sig[0] ^= 0x01;
      body.id_token = `${h}.${p}.${b64u.enc(sig)}`;
      return new Response(JSON.stringify(body), { status: r.status, headers: r.headers });
    };
    const bindingMessage = "Transfer 5.00 EUR to Bob";
    const ciba = await client.initiateBackchannelAuthentication(tampering, {
      scope: "openid",
      login_hint: APPROVER,
      binding_message: bindingMessage,
      authorization_details: JSON.stringify([{ type: "payment_initiation", amount: "5.00", to: "Bob" }]),
    });
    const polled = client.pollBackchannelAuthenticationGrant(tampering, ciba, undefined, {
      signal: AbortSignal.timeout(60_000),
    });
    polled.catch(() => {});
    const req = await approver.waitForRequest(bindingMessage);
    const { finish } = await approver.decide(req.request_id, "approve");
    assert.equal(finish.status, 201, `decide/finish: ${JSON.stringify(finish.body)}`);
    await assert.rejects(polled, (err) => {
      const text = `${err.code} ${err.message} ${err.cause?.code ?? ""} ${err.cause?.message ?? ""}`;
      assert.match(text, /signature/i);
      return true;
    });
  });

  test("a bogus passkey signature is refused, nothing is logged, the request stays pending", async () => {
    const bindingMessage = "Deploy build 1234 to production";
    const ciba = await client.initiateBackchannelAuthentication(config, {
      scope: "openid",
      login_hint: APPROVER,
      binding_message: bindingMessage,
      authorization_details: JSON.stringify([{ type: "deploy", build: 1234, target: "production" }]),
    });
    const req = await approver.waitForRequest(bindingMessage);
    const before = await server.checkpoint();
    const { finish } = await approver.decide(req.request_id, "approve", { bogusSignature: true });
    assert.ok(finish.status >= 400 && finish.status < 500, `bogus assertion answered ${finish.status}`);
    assert.equal(typeof finish.body.error, "string");
    const afterCp = await server.checkpoint();
    assert.equal(afterCp.size, before.size, "the tree did not grow");
    const still = await approver.waitForRequest(bindingMessage, 1000);
    assert.equal(still.status, "pending");
    const tok = await server.clientPost("/token", CLIENT_ID, CLIENT_SECRET, {
      grant_type: "urn:openid:params:grant-type:ciba",
      auth_req_id: ciba.auth_req_id,
    });
    assert.equal(tok.status, 400);
    assert.equal(tok.body.error, "authorization_pending");
  });
});
