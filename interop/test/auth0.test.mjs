// Auth0's own AI SDKs, unmodified, against Countersign over HTTPS (issue 16): `@auth0/ai-vercel`'s
// `withAsyncAuthorization` wrapping a Vercel AI SDK (`ai` 5) tool, with `@auth0/ai` and the
// `auth0` package underneath, pointed at `localhost:PORT` as if it were an Auth0 tenant.
//
// The SDK speaks only `https://<domain>`, so the server runs with `--tls-cert/--tls-key` from a
// CA made here with openssl. Node reads NODE_EXTRA_CA_CERTS once, at start, so this file runs
// twice: as the test `node --test` starts, it makes the CA and runs itself again in a child
// `node` with NODE_EXTRA_CA_CERTS (and SSL_CERT_FILE for the admin CLI) set to that CA, where the
// cases run; the parent passes when every case in the child passed.
//
// The agent side is what an Auth0 user writes: a tool made with `ai`'s `tool()`, wrapped, driven
// by `generateText` with `ai`'s own MockLanguageModelV2 (no network, no real model) that asks for
// one tool call. `onAuthorizationRequest: "block"` makes the wrapper poll until the decision
// (its default, "interrupt", returns after each poll for a chat UI to resume later).

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createPublicKey, verify } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Server, freePort, serverBinary } from "../lib/server.mjs";
import { ApiApprover } from "../lib/approver.mjs";
import { b64u } from "../lib/passkey.mjs";

const THIS_FILE = fileURLToPath(import.meta.url);
const CHILD = process.env.COUNTERSIGN_AUTH0_CHILD === "1";
const run = promisify(execFile);

/** A CA and a certificate for localhost (and 127.0.0.1) it issued, as PEM files in `dir`. */
async function makeCa(dir) {
  const f = (n) => path.join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", ["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2",
    "-subj", "/CN=Countersign interop test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await run("openssl", ["req", ...ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost"]);
  await writeFile(f("server.ext"),
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" +
    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
  await run("openssl", ["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
    "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("server.ext")]);
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key") };
}

if (!CHILD) {
  test("Auth0's AI SDKs against countersign over TLS (cases run in a child node trusting a test CA)", { timeout: 180_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "countersign-auth0-"));
    try {
      const tls = await makeCa(dir);
      const env = { ...process.env };
      // The child is a plain script: node:test runs its cases and reports them itself.
      delete env.NODE_TEST_CONTEXT;
      Object.assign(env, {
        COUNTERSIGN_AUTH0_CHILD: "1",
        COUNTERSIGN_AUTH0_TLS: JSON.stringify(tls),
        NODE_EXTRA_CA_CERTS: tls.ca,
        // The admin CLI (reqwest) trusts what SSL_CERT_FILE holds.
        SSL_CERT_FILE: tls.ca,
      });
      // localhost must be 127.0.0.1 (the server listens there only, and nothing else is asked).
      const child = spawn(process.execPath, ["--dns-result-order=ipv4first", THIS_FILE], {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      const code = await new Promise((resolve) => child.on("exit", (c, s) => resolve(c ?? s)));
      if (process.env.COUNTERSIGN_TEST_VERBOSE) process.stderr.write(out);
      assert.equal(code, 0, `the Auth0 cases failed:\n${out}`);
      assert.match(out, /# pass 4\b/, out);
      assert.match(out, /# fail 0\b/, out);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
} else {
  // Their packages load through CommonJS (`@auth0/ai-vercel` 4 is built for `ai` 5 that way).
  const require = createRequire(import.meta.url);
  const { Auth0AI, getAsyncAuthorizationCredentials, runWithAIContext } = require("@auth0/ai-vercel");
  const { AccessDeniedInterrupt, AuthorizationRequestExpiredInterrupt } = require("@auth0/ai/interrupts");
  const { generateText, tool } = require("ai");
  const { MockLanguageModelV2 } = require("ai/test");
  // zod 3's API, as `@auth0/ai-vercel` reads tool schemas with zod-to-json-schema.
  const { z } = require("zod/v3");

  const tls = JSON.parse(process.env.COUNTERSIGN_AUTH0_TLS);
  const CLIENT_ID = "agent-auth0";
  const CLIENT_SECRET = "auth0-shaped-secret-0123456789";
  const APPROVER = "apv_auth0";
  const AUDIENCE = "https://payments.example/api";

  describe("@auth0/ai-vercel withAsyncAuthorization against countersign over TLS", { timeout: 120_000 }, () => {
    let server;
    let approver;
    let port;

    before(async () => {
      port = await freePort();
      const dir = await mkdtemp(path.join(os.tmpdir(), "countersign-interop-"));
      const dataDir = path.join(dir, "data");
      // No --public-url: with TLS the default is https://localhost:PORT, the issuer the SDK names.
      const args = [
        "serve", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`,
        "--tls-cert", tls.cert, "--tls-key", tls.key,
        "--poll-interval", "1", "--min-expiry", "1", "--checkpoint-interval-ms", "1000",
      ];
      server = new Server(serverBinary(), args, dir, dataDir, port, `https://localhost:${port}`);
      server.url = `https://localhost:${port}`;
      await server.waitReady(30_000);
      const disco = await (await fetch(`${server.url}/.well-known/openid-configuration`)).json();
      assert.equal(disco.issuer, `https://localhost:${port}`);
      // An Auth0 application authenticates with client_secret_post (the SDK never uses Basic).
      await server.addClient(CLIENT_ID, CLIENT_SECRET, ["--auth-method", "client_secret_post"]);
      const link = await server.addApprover(APPROVER, "auth0-approver@example.com", "Auth0 Approver");
      approver = await ApiApprover.create(server, "localhost", server.url);
      await approver.enrol(link);
      await approver.signIn();
      // Over HTTPS the session cookie is Secure.
      const start = await approver.post("/v1/session/start", {}, { withSession: false });
      const credential = await approver.passkey.assert(b64u.dec(start.body.publicKey.challenge));
      const fin = await approver.post("/v1/session/finish", { ceremony_id: start.body.ceremony_id, credential }, { withSession: false });
      assert.equal(fin.status, 200);
      assert.match(fin.headers.get("set-cookie") ?? "", /;\s*Secure/i);
    });

    after(async () => {
      if (server) await server.stop();
    });

    /**
     * A payment tool wrapped by Auth0's withAsyncAuthorization, as their docs show it; `ran`
     * records each execution with its arguments and the credentials the wrapper handed it.
     */
    function wrappedPayTool({ requestedExpiry = 60, domainPort = port } = {}) {
      const auth0AI = new Auth0AI({
        auth0: { domain: `localhost:${domainPort}`, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
      });
      const withApproval = auth0AI.withAsyncAuthorization({
        userID: APPROVER,
        scopes: ["payments"],
        audience: AUDIENCE,
        requestedExpiry,
        bindingMessage: async ({ amount, to }) => `Pay ${amount} EUR to ${to}`,
        authorizationDetails: async ({ amount, to }) => [
          { type: "payment_initiation", instructedAmount: { currency: "EUR", amount }, creditorName: to },
        ],
        onAuthorizationRequest: "block",
      });
      const ran = [];
      const pay = withApproval(
        tool({
          description: "Pay an amount in EUR to a creditor",
          inputSchema: z.object({ amount: z.string(), to: z.string() }),
          execute: async (input) => {
            ran.push({ input, credentials: getAsyncAuthorizationCredentials() });
            return { paid: true };
          },
        }),
      );
      return { pay, ran };
    }

    /** generateText with a mock model that calls `pay` once with `input`; the tool's result. */
    async function agentCalls(pay, input, threadID) {
      const model = new MockLanguageModelV2({
        doGenerate: async () => ({
          content: [{ type: "tool-call", toolCallId: `call-${threadID}`, toolName: "pay", input: JSON.stringify(input) }],
          finishReason: "tool-calls",
          usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 },
          warnings: [],
        }),
      });
      const result = await runWithAIContext({ threadID }, () =>
        generateText({ model, tools: { pay }, prompt: `pay ${input.amount} to ${input.to}` }),
      );
      const results = result.toolResults ?? [];
      assert.equal(results.length, 1, `one tool result: ${JSON.stringify(result.content)}`);
      return results[0].output;
    }

    /** The claims of a JWT after its EdDSA signature is checked against the server's JWKS. */
    async function verifiedClaims(jwt) {
      const [h, c, s] = jwt.split(".");
      const header = JSON.parse(Buffer.from(h, "base64url"));
      const jwks = await (await fetch(`${server.url}/jwks.json`)).json();
      const jwk = jwks.keys.find((k) => k.kid === header.kid);
      assert.ok(jwk, "the token's key is in the JWKS");
      const ok = verify(null, Buffer.from(`${h}.${c}`), createPublicKey({ key: jwk, format: "jwk" }), Buffer.from(s, "base64url"));
      assert.ok(ok, "the access token's signature verifies");
      return JSON.parse(Buffer.from(c, "base64url"));
    }

    test("approve: the wrapped tool runs once, with the approved arguments", async () => {
      const { pay, ran } = wrappedPayTool();
      const input = { amount: "42.00", to: "ACME" };
      const outcome = agentCalls(pay, input, "approve");
      const req = await approver.waitForRequest("Pay 42.00 EUR to ACME", 15_000);
      const { finish } = await approver.decide(req.request_id, "approve");
      assert.equal(finish.status, 201, JSON.stringify(finish.body));
      const output = await outcome;
      assert.deepEqual(output, { paid: true });
      assert.equal(ran.length, 1, "the tool ran once");
      assert.deepEqual(ran[0].input, input);
      const creds = ran[0].credentials;
      const claims = await verifiedClaims(creds.accessToken);
      assert.equal(claims.iss, server.url);
      assert.equal(claims.aud, AUDIENCE, "the audience the SDK asked for");
      assert.equal(claims.client_id, CLIENT_ID);
      assert.equal(claims.sub, APPROVER);
      assert.deepEqual(claims.authorization_details, [
        { type: "payment_initiation", instructedAmount: { currency: "EUR", amount: "42.00" }, creditorName: "ACME" },
      ], "the token approves exactly the arguments the tool ran with");
      assert.equal(claims.log_index, finish.body.log_index);
    });

    test("deny: Auth0's AccessDeniedInterrupt, and the tool never runs", async () => {
      const { pay, ran } = wrappedPayTool();
      const outcome = agentCalls(pay, { amount: "900.00", to: "Mallory" }, "deny");
      const req = await approver.waitForRequest("Pay 900.00 EUR to Mallory", 15_000);
      const { finish } = await approver.decide(req.request_id, "deny");
      assert.equal(finish.status, 201, JSON.stringify(finish.body));
      // The wrapper returns (does not throw) what stopped it; `ai` hands it back as the output.
      const output = await outcome;
      assert.ok(output instanceof AccessDeniedInterrupt, `got ${output?.constructor?.name}: ${output?.message}`);
      assert.equal(output.code, "ASYNC_AUTHORIZATION_ACCESS_DENIED");
      assert.equal(ran.length, 0, "the tool never ran");
    });

    test("expiry: Auth0's expired interrupt (or the server's expired_token), and the tool never runs", async (t) => {
      const { pay, ran } = wrappedPayTool({ requestedExpiry: 3 });
      const started = Date.now();
      const output = await agentCalls(pay, { amount: "7.00", to: "Nobody" }, "expire");
      // Their SDK decides expiry by its own clock before each poll (AuthorizationRequestExpiredInterrupt);
      // a poll that reaches the server first, in the second before that, gets the server's
      // CIBA expired_token, which the SDK passes through as the error itself. Both stop the tool.
      const expiredInterrupt = output instanceof AuthorizationRequestExpiredInterrupt;
      const expiredToken = output?.error === "expired_token";
      assert.ok(expiredInterrupt || expiredToken, `got ${output?.constructor?.name}: ${output?.message} ${output?.error ?? ""}`);
      t.diagnostic(expiredInterrupt ? "the SDK's AuthorizationRequestExpiredInterrupt" : "the server's expired_token");
      assert.ok(Date.now() - started >= 1_900, "not before the request expired");
      assert.equal(ran.length, 0, "the tool never ran");
    });

    test("server unreachable: the SDK reports an error, and the tool never runs", async () => {
      // A port nothing listens on (bound, read and released).
      const { pay, ran } = wrappedPayTool({ domainPort: await freePort() });
      let outcome;
      try {
        outcome = await agentCalls(pay, { amount: "5.00", to: "Nowhere" }, "unreachable");
      } catch (e) {
        outcome = e;
      }
      assert.ok(outcome instanceof Error, `an error, not a result: ${JSON.stringify(outcome)}`);
      assert.equal(ran.length, 0, "the tool never ran");
    });
  });
}
