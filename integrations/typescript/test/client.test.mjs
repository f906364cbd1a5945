// The client against a live countersign server: discovery, requestApproval, waitForDecision in
// poll, ping and push mode (approve, deny, expiry), slow_down, Retry-After, AbortSignal, the
// notification handler's checks, typed errors, and checkExecution on real tokens.

import assert from "node:assert/strict";
import http from "node:http";
import { inspect } from "node:util";
import { after, before, describe, test } from "node:test";

import {
  AccessDenied,
  CountersignClient,
  CountersignError,
  ExecutionMismatch,
  Expired,
  InvalidClient,
  InvalidGrant,
  InvalidRequest,
  InvalidToken,
  Unreachable,
} from "../dist/index.js";
import { APPROVER, APPROVER_EMAIL, deadUrl, Live, tamperPayload, tamperSignature, uniqueMessage } from "./support/live.mjs";

const payment = (amount) => [
  { type: "payment_initiation", instructedAmount: { currency: "EUR", amount }, creditorName: "ACME Ltd" },
];

describe("CountersignClient against a live server", { timeout: 180_000 }, () => {
  let live;
  let poll;
  before(async () => {
    live = await Live.start();
    poll = (await live.client("sdk-poll")).client;
  }, { timeout: 60_000 });
  after(async () => live?.stop(), { timeout: 30_000 });

  test("discovery: the issuer is the configured URL and the CIBA endpoints are listed", async () => {
    const m = await poll.metadata();
    assert.equal(m.issuer, live.server.url);
    assert.equal(m.backchannel_authentication_endpoint, `${live.server.url}/bc-authorize`);
    assert.equal(m.jwks_uri, `${live.server.url}/jwks.json`);
  });

  test("poll, approved: tokens whose authorization_details are the action, checked by checkExecution", async () => {
    const msg = uniqueMessage("Pay 10.00 EUR to ACME");
    const pending = await poll.requestApproval({
      approver: APPROVER_EMAIL,
      bindingMessage: msg,
      authorizationDetails: payment("10.00"),
      scope: "payments",
    });
    assert.equal(typeof pending.authReqId, "string");
    assert.equal(pending.interval, 1);
    const waiting = poll.waitForDecision(pending);
    const { finish } = await live.decide(msg, "approve");
    const tokens = await waiting;
    assert.equal(tokens.tokenType, "Bearer");
    assert.ok(tokens.idToken);
    assert.equal(tokens.scope, "openid payments");

    const claims = await poll.checkExecution(tokens.accessToken, payment("10.00"));
    assert.equal(claims.sub, APPROVER);
    assert.equal(claims.client_id, "sdk-poll");
    assert.equal(claims.log_index, finish.log_index);
    // Member order does not matter, values do.
    await poll.checkExecution(tokens.accessToken, [{ creditorName: "ACME Ltd", instructedAmount: { amount: "10.00", currency: "EUR" }, type: "payment_initiation" }]);
    await assert.rejects(poll.checkExecution(tokens.accessToken, payment("11.00")), ExecutionMismatch);
    await assert.rejects(poll.checkExecution(tamperSignature(tokens.accessToken), payment("10.00")), InvalidToken);
    const raised = tamperPayload(tokens.accessToken, (c) => (c.authorization_details[0].instructedAmount.amount = "11.00"));
    await assert.rejects(poll.checkExecution(raised, payment("11.00")), (e) => e instanceof InvalidToken && /signature/.test(e.message));
    // The ID token is not an access token.
    await assert.rejects(poll.checkExecution(tokens.idToken, payment("10.00")), InvalidToken);
    // Issued once.
    await assert.rejects(poll.fetchToken(pending.authReqId), (e) => e instanceof InvalidGrant && e.code === "invalid_grant");
  });

  test("a token of another client of the same server is refused", async () => {
    const other = (await live.client("sdk-other")).client;
    const msg = uniqueMessage("Pay 3.00 EUR to ACME");
    const waiting = other.approve({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("3.00") });
    await live.decide(msg, "approve");
    const tokens = await waiting;
    await other.checkExecution(tokens.accessToken, payment("3.00"));
    await assert.rejects(poll.checkExecution(tokens.accessToken, payment("3.00")), (e) => e instanceof InvalidToken && /aud/.test(e.message));
  });

  test("poll, denied: AccessDenied with the OAuth code and description", async () => {
    const msg = uniqueMessage("Pay 20.00 EUR to ACME");
    const waiting = poll.approve({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("20.00") });
    waiting.catch(() => {});
    await live.decide(msg, "deny");
    await assert.rejects(waiting, (e) => {
      assert.ok(e instanceof AccessDenied, `${e}`);
      assert.ok(e instanceof CountersignError);
      assert.equal(e.code, "access_denied");
      assert.equal(e.status, 400);
      assert.match(e.description, /denied/);
      return true;
    });
  });

  test("poll, expired: Expired once requested_expiry passes undecided", async () => {
    const started = Date.now();
    await assert.rejects(
      poll.approve({ approver: APPROVER, bindingMessage: uniqueMessage("Never decided"), authorizationDetails: payment("1.00"), requestedExpiry: 2 }),
      (e) => e instanceof Expired && e.code === "expired_token",
    );
    assert.ok(Date.now() - started >= 2000);
  });

  test("slow_down: a client polling too fast gets slow_down and adds 5 s to its interval", async () => {
    const msg = uniqueMessage("Pay 30.00 EUR to ACME");
    const pending = await poll.requestApproval({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("30.00") });
    const events = [];
    let approved;
    // Told to poll every 0.2 s while the server asked for 1 s: too fast.
    const waiting = poll.waitForDecision({ ...pending, interval: 0.2 }, {
      onPoll: (e) => {
        events.push(e);
        if (e.outcome === "slow_down" && !approved) approved = live.decide(msg, "approve");
      },
    });
    const tokens = await waiting;
    await approved;
    const slow = events.findIndex((e) => e.outcome === "slow_down");
    assert.ok(slow >= 1, JSON.stringify(events));
    assert.equal(events[slow].interval, 6, "max(0.2, server's 1) + 5");
    const last = events.at(-1);
    assert.equal(last.outcome, "ok");
    assert.equal(last.waited, 6);
    assert.equal(events.filter((e) => e.outcome === "slow_down").length, 1, "one slow_down, then compliant");
    await poll.checkExecution(tokens.accessToken, payment("30.00"));
  });

  test("AbortSignal: a wait stops at once when aborted, and an aborted request is not sent", async () => {
    const pending = await poll.requestApproval({ approver: APPROVER, bindingMessage: uniqueMessage("Abandoned"), authorizationDetails: payment("2.00") });
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(new Error("user gave up")), 300);
    await assert.rejects(poll.waitForDecision(pending, { signal: ac.signal }), /user gave up/);
    assert.ok(Date.now() - started < 900);
    await assert.rejects(
      poll.requestApproval({ approver: APPROVER, bindingMessage: "x", authorizationDetails: payment("2.00") }, { signal: AbortSignal.abort() }),
      (e) => e.name === "AbortError",
    );
  });

  test("typed errors: unknown approver, bad binding message, wrong secret, unknown auth_req_id", async () => {
    await assert.rejects(
      poll.requestApproval({ approver: "nobody@example.com", bindingMessage: "Pay", authorizationDetails: payment("1.00") }),
      (e) => e instanceof InvalidRequest && e.code === "unknown_user_id" && e.status === 400,
    );
    await assert.rejects(
      poll.requestApproval({ approver: APPROVER, bindingMessage: "Pay\u202e 1.00", authorizationDetails: payment("1.00") }),
      (e) => e instanceof InvalidRequest && e.code === "invalid_binding_message",
    );
    await assert.rejects(
      poll.requestApproval({ approver: APPROVER, bindingMessage: "Pay", authorizationDetails: [{ no_type: 1 }] }),
      (e) => e instanceof InvalidRequest && e.code === "invalid_authorization_details",
    );
    const wrong = new CountersignClient({ url: live.server.url, clientId: "sdk-poll", clientSecret: "not-the-secret" });
    await assert.rejects(
      wrong.requestApproval({ approver: APPROVER, bindingMessage: "Pay", authorizationDetails: payment("1.00") }),
      (e) => e instanceof InvalidClient && e.code === "invalid_client" && e.status === 401,
    );
    await assert.rejects(poll.fetchToken("no-such-request"), InvalidGrant);
    assert.ok(!JSON.stringify(wrong).includes("not-the-secret"), "the secret is not serialised");
    assert.ok(!inspect(wrong, { depth: 5, showHidden: true }).includes("not-the-secret"), "nor shown by console.log");
  });

  test("unreachable: no server is Unreachable, for requests and for the execution check", async () => {
    const dead = new CountersignClient({ url: await deadUrl(), clientId: "x", clientSecret: "y", timeoutMs: 2000 });
    await assert.rejects(
      dead.requestApproval({ approver: APPROVER, bindingMessage: "Pay", authorizationDetails: payment("1.00") }),
      (e) => e instanceof Unreachable && e.code === "unreachable",
    );
    await assert.rejects(dead.checkExecution("a.b.c", payment("1.00")), Unreachable);
  });
});

describe("ping and push delivery against a live server", { timeout: 120_000 }, () => {
  let live;
  let ping;
  let push;
  before(async () => {
    live = await Live.start();
    ping = await live.client("sdk-ping", "ping");
    push = await live.client("sdk-push", "push");
  }, { timeout: 60_000 });
  after(async () => live?.stop(), { timeout: 30_000 });

  test("ping, approved: the ping wakes the wait, which fetches the tokens (long before the 30 s fallback)", async () => {
    const msg = uniqueMessage("Ping pay 5.00 EUR");
    const events = [];
    const waiting = ping.client.approve({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("5.00") }, { onPoll: (e) => events.push(e) });
    await live.decide(msg, "approve");
    const tokens = await waiting;
    await ping.client.checkExecution(tokens.accessToken, payment("5.00"));
    assert.equal(events.length, 1, "one token request, made on the ping");
    assert.ok(events[0].waited < 10, JSON.stringify(events));
  });

  test("ping, denied: AccessDenied", async () => {
    const msg = uniqueMessage("Ping pay 6.00 EUR");
    const waiting = ping.client.approve({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("6.00") });
    waiting.catch(() => {});
    await live.decide(msg, "deny");
    await assert.rejects(waiting, AccessDenied);
  });

  test("ping, expired: no ping comes; the token endpoint says expired_token after expiry", async () => {
    await assert.rejects(
      ping.client.approve({ approver: APPROVER, bindingMessage: uniqueMessage("Ping never decided"), authorizationDetails: payment("1.00"), requestedExpiry: 2 }),
      Expired,
    );
  });

  test("the notification endpoint refuses a wrong or missing bearer token, other methods and bodies", async () => {
    const msg = uniqueMessage("Ping pay 7.00 EUR");
    const pending = await ping.client.requestApproval({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("7.00") });
    const send = (headers, body, method = "POST") =>
      fetch(ping.endpoint, { method, headers: { "content-type": "application/json", ...headers }, body: method === "POST" ? body : undefined });
    const body = JSON.stringify({ auth_req_id: pending.authReqId });
    assert.equal((await send({}, body)).status, 401);
    assert.equal((await send({ authorization: "Bearer guessed-token" }, body)).status, 401);
    assert.equal((await send({ authorization: "Basic eDp5" }, body)).status, 401);
    assert.equal((await send({}, undefined, "GET")).status, 405);
    // A forged ping did not wake the wait: it still waits for the real decision.
    const events = [];
    const waiting = ping.client.waitForDecision(pending, { onPoll: (e) => events.push(e) });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(events.length, 0, "no token request without a real ping");
    await live.decide(msg, "approve");
    await ping.client.checkExecution((await waiting).accessToken, payment("7.00"));
  });

  test("push, approved: the tokens arrive at the notification endpoint", async () => {
    const msg = uniqueMessage("Push pay 8.00 EUR");
    const waiting = push.client.approve({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("8.00") });
    await live.decide(msg, "approve");
    const tokens = await waiting;
    assert.equal(typeof tokens.raw.auth_req_id, "string");
    await push.client.checkExecution(tokens.accessToken, payment("8.00"));
    await assert.rejects(push.client.checkExecution(tokens.accessToken, payment("8.01")), ExecutionMismatch);
  });

  test("push, denied and expired: AccessDenied and Expired from the push", async () => {
    const msg = uniqueMessage("Push pay 9.00 EUR");
    const denied = push.client.approve({ approver: APPROVER, bindingMessage: msg, authorizationDetails: payment("9.00") });
    denied.catch(() => {});
    await live.decide(msg, "deny");
    await assert.rejects(denied, AccessDenied);
    const started = Date.now();
    await assert.rejects(
      push.client.approve({ approver: APPROVER, bindingMessage: uniqueMessage("Push never decided"), authorizationDetails: payment("1.00"), requestedExpiry: 2 }),
      (e) => e instanceof Expired && e.description === "the request expired before the approver decided",
    );
    assert.ok(Date.now() - started < 8000, "the server's expiry push ended the wait, not the client's own deadline");
  });
});

describe("Retry-After and failing servers (a scripted token endpoint on 127.0.0.1)", () => {
  test("Retry-After on 503 is waited, then polling goes on; three failures in a row end it as ServerError", async () => {
    const answers = [
      [503, { "retry-after": "2" }, { error: "queue_full", error_description: "busy" }],
      [400, {}, { error: "authorization_pending" }],
      [200, {}, { access_token: "a.b.c", token_type: "Bearer", expires_in: 60 }],
    ];
    let script = answers;
    const srv = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const base = `http://127.0.0.1:${srv.address().port}`;
        if (req.url === "/.well-known/openid-configuration") {
          res.writeHead(200, { "content-type": "application/json" });
          return res.end(JSON.stringify({
            issuer: base,
            token_endpoint: `${base}/token`,
            backchannel_authentication_endpoint: `${base}/bc-authorize`,
            jwks_uri: `${base}/jwks.json`,
          }));
        }
        if (req.url === "/bc-authorize") {
          res.writeHead(200, { "content-type": "application/json" });
          return res.end(JSON.stringify({ auth_req_id: "r1", expires_in: 60, interval: 1 }));
        }
        const [status, headers, json] = script.shift() ?? [500, {}, { error: "server_error" }];
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(json));
      });
    });
    await new Promise((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const c = new CountersignClient({ url: `http://127.0.0.1:${srv.address().port}`, clientId: "c", clientSecret: "s" });
      const events = [];
      const t = await c.approve({ approver: "a", bindingMessage: "m", authorizationDetails: [{ type: "x" }] }, { onPoll: (e) => events.push(e) });
      assert.equal(t.accessToken, "a.b.c");
      assert.deepEqual(events.map((e) => e.outcome), ["queue_full", "authorization_pending", "ok"]);
      assert.equal(events[1].waited, 2, "waited Retry-After");
      script = [];
      await assert.rejects(
        c.approve({ approver: "a", bindingMessage: "m", authorizationDetails: [{ type: "x" }] }),
        (e) => e.code === "server_error" && e.status === 500,
      );
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });
});
