// countersign-mcp driven by the official MCP TypeScript client (@modelcontextprotocol/sdk), over
// stdio and over streamable HTTP, against a live `countersign` server. The approver decides with
// a software passkey through the approval API (interop/lib/approver.mjs), as the pages do.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { ApiApprover } from "../../../interop/lib/approver.mjs";
import { freePort, Server } from "../../../interop/lib/server.mjs";

import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

import { connectHttp, connectStdio, startHttp, startProxy, textOf } from "./lib.mjs";

const CLIENT_ID = "mcp-agent";
const CLIENT_SECRET = "mcp-agent-secret-0123456789";
const APPROVER = "apv_mcp_alice";

const payment = (amount) => [
  {
    type: "payment_initiation",
    instructedAmount: { currency: "EUR", amount },
    creditorName: "ACME Ltd",
  },
];

let server;
let approver;
let tmp;
/** An access token the approve case received (for payment("12.50")), reused by the proxy cases. */
let approvedToken;
/** The auth_req_id of an approved request, for verify_evidence. */
let approvedId;

before(async () => {
  // --min-expiry 2: the expiry case asks for a 2-second request.
  server = await Server.start({ extraArgs: ["--min-expiry", "2"] });
  await server.addClient(CLIENT_ID, CLIENT_SECRET);
  const link = await server.addApprover(APPROVER, "alice@example.com", "Alice Example");
  approver = await ApiApprover.create(server);
  await approver.enrol(link);
  await approver.signIn();
  tmp = await mkdtemp(path.join(os.tmpdir(), "countersign-mcp-test-"));
});

after(async () => {
  await server?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Calls request_approval and, while it waits, has the approver decide `decision`. */
async function requestAndDecide(client, { message, details, decision, wait = 20 }) {
  const call = client.callTool({
    name: "request_approval",
    arguments: { approver: APPROVER, binding_message: message, authorization_details: details, wait_seconds: wait },
  });
  const req = await approver.waitForRequest(message, 15_000);
  assert.deepEqual(req.authorization_details, details, "the approver sees exactly the requested action");
  const { finish, statementHash } = await approver.decide(req.request_id, decision);
  assert.equal(finish.status, 201, `decide/finish: ${JSON.stringify(finish.body)}`);
  const decidedAt = performance.now();
  const result = await call;
  // From the approver's decision (logged and answered) to the agent's tool result.
  return { result, statementHash, latencyMs: performance.now() - decidedAt };
}

async function fetchBundle(authReqId) {
  const r = await fetch(`${server.url}/v1/evidence/${encodeURIComponent(authReqId)}`, {
    headers: { authorization: "Basic " + Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64") },
  });
  assert.equal(r.status, 200, "the client reads its own evidence");
  return r.json();
}

for (const transport of ["stdio", "http"]) {
  describe(`countersign-mcp over ${transport}`, { timeout: 180_000 }, () => {
    let client;
    let httpServer;

    before(async () => {
      if (transport === "stdio") {
        client = (await connectStdio({ url: server.url, clientId: CLIENT_ID, secret: CLIENT_SECRET })).client;
      } else {
        // Over HTTP the secret comes from a file, and is never printed.
        const secretFile = path.join(tmp, "secret");
        await writeFile(secretFile, `${CLIENT_SECRET}\n`, { mode: 0o600 });
        httpServer = await startHttp({ url: server.url, clientId: CLIENT_ID, secretFile });
        client = await connectHttp(httpServer.url);
      }
    });

    after(async () => {
      await client?.close();
      if (httpServer) {
        await httpServer.stop();
        assert.ok(!httpServer.stderr().includes(CLIENT_SECRET), "the secret is not in the logs");
        assert.equal(httpServer.stdout(), "", "nothing on standard output in HTTP mode");
      }
    });

    test("tools/list shows the three tools with input and output schemas", async () => {
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ["get_decision", "request_approval", "verify_evidence"]);
      const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
      const ra = byName.request_approval;
      assert.equal(ra.inputSchema.type, "object");
      assert.deepEqual(ra.inputSchema.required.sort(), ["approver", "authorization_details", "binding_message"]);
      assert.equal(ra.inputSchema.properties.authorization_details.type, "array");
      assert.equal(ra.inputSchema.properties.wait_seconds.type, "integer");
      assert.deepEqual(ra.outputSchema.properties.status.enum, ["approved", "denied", "expired", "pending"]);
      assert.deepEqual(byName.get_decision.inputSchema.required, ["auth_req_id"]);
      assert.ok(byName.verify_evidence.inputSchema.properties.bundle);
      assert.ok(byName.verify_evidence.inputSchema.properties.auth_req_id);
      for (const t of tools) assert.equal(t.outputSchema.type, "object", t.name);
    });

    test("approve: approved with the access token, log index and the signed statement's hash", async (t) => {
      const details = payment("12.50");
      const { result, statementHash, latencyMs } = await requestAndDecide(client, {
        message: `Pay ACME Ltd 12.50 EUR (${transport})`,
        details,
        decision: "approve",
      });
      t.diagnostic(`decision to tool result over ${transport}: ${latencyMs.toFixed(0)} ms (server poll interval 1 s)`);
      assert.ok(!result.isError, textOf(result));
      const s = result.structuredContent;
      assert.equal(s.status, "approved");
      assert.equal(s.approved, true);
      assert.equal(s.statement_sha256, statementHash, "the hash the approver's passkey signed");
      assert.ok(Number.isInteger(s.log_index) && s.log_index > 0);
      assert.match(s.access_token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
      const claims = JSON.parse(Buffer.from(s.access_token.split(".")[1], "base64url"));
      assert.deepEqual(claims.authorization_details, details);
      assert.equal(claims.statement_hash, statementHash);
      assert.equal(s.evidence_url, `${server.url}/v1/evidence/${encodeURIComponent(s.auth_req_id)}`);
      assert.match(textOf(result), /^APPROVED/);
      assert.ok(!textOf(result).includes(s.access_token), "the text rendering leaves the token out");
      // Asked again, the same answer (the server hands tokens out once; the MCP server keeps it).
      const again = await client.callTool({ name: "get_decision", arguments: { auth_req_id: s.auth_req_id, wait_seconds: 0 } });
      assert.equal(again.structuredContent.status, "approved");
      assert.equal(again.structuredContent.access_token, s.access_token);
      approvedToken ??= s.access_token;
      approvedId ??= s.auth_req_id;

      // verify_evidence: the real bundle by id and as given, then a tampered copy.
      const byId = await client.callTool({ name: "verify_evidence", arguments: { auth_req_id: s.auth_req_id } });
      assert.ok(!byId.isError, textOf(byId));
      assert.equal(byId.structuredContent.valid, true, textOf(byId));
      assert.equal(byId.structuredContent.decision, "approve");
      assert.equal(byId.structuredContent.statement_sha256, statementHash);
      assert.equal(byId.structuredContent.log_index, s.log_index);
      assert.equal(byId.structuredContent.log_key, await server.vkey());
      assert.ok(byId.structuredContent.checked.length >= 5);
      const bundle = await fetchBundle(s.auth_req_id);
      const given = await client.callTool({ name: "verify_evidence", arguments: { bundle } });
      assert.equal(given.structuredContent.valid, true, textOf(given));
      const tampered = structuredClone(bundle);
      tampered.statement.authorization_details[0].instructedAmount.amount = "1250.00";
      const bad = await client.callTool({ name: "verify_evidence", arguments: { bundle: JSON.stringify(tampered) } });
      assert.ok(!bad.isError, "an invalid bundle is a verdict, not an error");
      assert.equal(bad.structuredContent.valid, false);
      assert.match(bad.structuredContent.reason, /statement/);
      assert.match(textOf(bad), /^INVALID/);
      const flipped = structuredClone(bundle);
      flipped.decision.inclusion_proof[0] = flipped.decision.inclusion_proof[0].replace(/^./, (c) => (c === "0" ? "1" : "0"));
      const bad2 = await client.callTool({ name: "verify_evidence", arguments: { bundle: flipped } });
      assert.equal(bad2.structuredContent.valid, false, textOf(bad2));
    });

    test("deny: denied, never a token", async () => {
      const { result, statementHash } = await requestAndDecide(client, {
        message: `Pay ACME Ltd 99.00 EUR (${transport})`,
        details: payment("99.00"),
        decision: "deny",
      });
      assert.ok(!result.isError, textOf(result));
      const s = result.structuredContent;
      assert.equal(s.status, "denied");
      assert.equal(s.approved, false);
      assert.equal(s.access_token, null);
      assert.equal(s.statement_sha256, statementHash, "the denial's statement, from its verified evidence");
      assert.ok(Number.isInteger(s.log_index));
      const again = await client.callTool({ name: "get_decision", arguments: { auth_req_id: s.auth_req_id, wait_seconds: 0 } });
      assert.equal(again.structuredContent.status, "denied");
      const v = await client.callTool({ name: "verify_evidence", arguments: { auth_req_id: s.auth_req_id } });
      assert.equal(v.structuredContent.valid, true);
      assert.equal(v.structuredContent.decision, "deny");
      assert.equal(v.structuredContent.approved, false);
    });

    test("expiry: a request nobody decides is expired", async () => {
      const r = await client.callTool({
        name: "request_approval",
        arguments: {
          approver: APPROVER,
          binding_message: `Delete repository demo (${transport})`,
          authorization_details: [{ type: "repository_delete", repository: "demo" }],
          requested_expiry: 2,
          wait_seconds: 10,
        },
      });
      assert.ok(!r.isError, textOf(r));
      assert.equal(r.structuredContent.status, "expired");
      assert.equal(r.structuredContent.approved, false);
      assert.equal(r.structuredContent.access_token, null);
    });

    test("a short wait answers pending; get_decision then answers approved", async () => {
      const details = payment("7.00");
      const message = `Pay ACME Ltd 7.00 EUR (${transport}, later)`;
      const r = await client.callTool({
        name: "request_approval",
        arguments: { approver: APPROVER, binding_message: message, authorization_details: details, wait_seconds: 0 },
      });
      assert.ok(!r.isError, textOf(r));
      const s = r.structuredContent;
      assert.equal(s.status, "pending");
      assert.equal(s.approved, false);
      assert.equal(s.access_token, null);
      assert.equal(s.statement_sha256, null, "not known before the decision");
      assert.match(s.auth_req_id, /\S/);
      // Other details than the request's: refused, and nothing is polled.
      const other = await client.callTool({
        name: "get_decision",
        arguments: { auth_req_id: s.auth_req_id, wait_seconds: 0, authorization_details: payment("7000.00") },
      });
      assert.equal(other.isError, true);
      assert.match(textOf(other), /not approved/);
      const req = await approver.waitForRequest(message, 15_000);
      const { statementHash } = await approver.decide(req.request_id, "approve");
      const g = await client.callTool({ name: "get_decision", arguments: { auth_req_id: s.auth_req_id, wait_seconds: 15 } });
      assert.ok(!g.isError, textOf(g));
      assert.equal(g.structuredContent.status, "approved");
      assert.equal(g.structuredContent.statement_sha256, statementHash);
      assert.ok(g.structuredContent.access_token);
    });

    test("bad arguments are tool errors, before anything is sent", async () => {
      const r = await client.callTool({
        name: "request_approval",
        arguments: { approver: APPROVER, binding_message: "x", authorization_details: [] },
      });
      assert.equal(r.isError, true);
      assert.match(textOf(r), /authorization_details/);
      const u = await client.callTool({
        name: "get_decision",
        arguments: { auth_req_id: "not-one-of-ours", wait_seconds: 0 },
      });
      assert.equal(u.isError, true);
      const unknownApprover = await client.callTool({
        name: "request_approval",
        arguments: { approver: "apv_nobody", binding_message: "Pay 1 EUR", authorization_details: payment("1.00"), wait_seconds: 0 },
      });
      assert.equal(unknownApprover.isError, true);
      assert.match(textOf(unknownApprover), /unknown_user_id/);
    });
  });
}

describe("a request made by another process (a restart)", { timeout: 60_000 }, () => {
  test("get_decision needs the request's authorization_details, then checks the token against them", async () => {
    const details = payment("21.00");
    const message = "Pay ACME Ltd 21.00 EUR (restart)";
    const first = await connectStdio({ url: server.url, clientId: CLIENT_ID, secret: CLIENT_SECRET });
    let id;
    try {
      const r = await first.client.callTool({
        name: "request_approval",
        arguments: { approver: APPROVER, binding_message: message, authorization_details: details, wait_seconds: 0 },
      });
      assert.equal(r.structuredContent.status, "pending");
      id = r.structuredContent.auth_req_id;
    } finally {
      await first.client.close();
    }
    const req = await approver.waitForRequest(message, 15_000);
    const { statementHash } = await approver.decide(req.request_id, "approve");
    const second = await connectStdio({ url: server.url, clientId: CLIENT_ID, secret: CLIENT_SECRET });
    try {
      const unknown = await second.client.callTool({ name: "get_decision", arguments: { auth_req_id: id, wait_seconds: 0 } });
      assert.equal(unknown.isError, true, "without the details the token could not be checked: nothing is polled");
      assert.match(textOf(unknown), /authorization_details/);
      const g = await second.client.callTool({
        name: "get_decision",
        arguments: { auth_req_id: id, wait_seconds: 5, authorization_details: details },
      });
      assert.ok(!g.isError, textOf(g));
      assert.equal(g.structuredContent.status, "approved");
      assert.equal(g.structuredContent.statement_sha256, statementHash);

      // Another request, approved, asked for with other details: the real token does not
      // approve them, so it is not an approval (and stays refused).
      const m2 = "Pay ACME Ltd 22.00 EUR (restart, other details)";
      const r2 = await second.client.callTool({
        name: "request_approval",
        arguments: { approver: APPROVER, binding_message: m2, authorization_details: payment("22.00"), wait_seconds: 0 },
      });
      const id2 = r2.structuredContent.auth_req_id;
      const third = await connectStdio({ url: server.url, clientId: CLIENT_ID, secret: CLIENT_SECRET });
      try {
        await approver.decide((await approver.waitForRequest(m2, 15_000)).request_id, "approve");
        for (let i = 0; i < 2; i++) {
          const w = await third.client.callTool({
            name: "get_decision",
            arguments: { auth_req_id: id2, wait_seconds: 5, authorization_details: payment("2200.00") },
          });
          assert.equal(w.isError, true, textOf(w));
          assert.notEqual(w.structuredContent?.status, "approved");
          assert.match(textOf(w), /authorization_details differ/);
        }
      } finally {
        await third.client.close();
      }
    } finally {
      await second.client.close();
    }
  });
});

describe("URL-mode elicitation (--offer-approval-page)", { timeout: 60_000 }, () => {
  test("a client that declares it is offered the approval page; the decision still comes from CIBA", async () => {
    const offers = [];
    const { client } = await connectStdio({
      url: server.url,
      clientId: CLIENT_ID,
      secret: CLIENT_SECRET,
      args: ["--offer-approval-page"],
      capabilities: { elicitation: { url: {} } },
      setup: (c) =>
        c.setRequestHandler(ElicitRequestSchema, async (req) => {
          offers.push(req.params);
          return { action: "accept" };
        }),
    });
    try {
      const message = "Pay ACME Ltd 3.00 EUR (elicitation)";
      const { result, statementHash } = await requestAndDecide(client, { message, details: payment("3.00"), decision: "approve" });
      assert.equal(result.structuredContent.status, "approved", textOf(result));
      assert.equal(result.structuredContent.statement_sha256, statementHash);
      assert.equal(offers.length, 1);
      assert.equal(offers[0].mode, "url");
      assert.equal(offers[0].url, `${server.publicUrl}/approve`);
      assert.ok(offers[0].message.includes(message));
      assert.ok(offers[0].elicitationId);
      assert.ok(!JSON.stringify(offers[0]).includes(result.structuredContent.auth_req_id), "the auth_req_id (a secret) is not shown");
    } finally {
      await client.close();
    }
    // Without the flag, nothing is offered even to a client that declares URL elicitation.
    const none = [];
    const plain = await connectStdio({
      url: server.url,
      clientId: CLIENT_ID,
      secret: CLIENT_SECRET,
      capabilities: { elicitation: { url: {} } },
      setup: (c) => c.setRequestHandler(ElicitRequestSchema, async (req) => (none.push(req.params), { action: "accept" })),
    });
    try {
      const { result } = await requestAndDecide(plain.client, {
        message: "Pay ACME Ltd 4.00 EUR (no elicitation)",
        details: payment("4.00"),
        decision: "deny",
      });
      assert.equal(result.structuredContent.status, "denied");
      assert.equal(none.length, 0);
    } finally {
      await plain.client.close();
    }
  });
});

describe("fail closed", { timeout: 120_000 }, () => {
  test("server unreachable: a tool error, never approved", async () => {
    const port = await freePort(); // nothing listens there
    for (const mode of ["stdio", "http"]) {
      const opts = { url: `http://127.0.0.1:${port}`, clientId: CLIENT_ID, secret: CLIENT_SECRET };
      let client;
      let h;
      if (mode === "stdio") client = (await connectStdio(opts)).client;
      else client = await connectHttp((h = await startHttp(opts)).url);
      try {
        const r = await client.callTool({
          name: "request_approval",
          arguments: { approver: APPROVER, binding_message: "Pay 5 EUR", authorization_details: payment("5.00"), wait_seconds: 2 },
        });
        assert.equal(r.isError, true, mode);
        assert.notEqual(r.structuredContent?.status, "approved");
        assert.match(textOf(r), /not approved: .*unreachable/);
        const v = await client.callTool({ name: "verify_evidence", arguments: { auth_req_id: "x" } });
        assert.equal(v.isError, true);
      } finally {
        await client.close();
        await h?.stop();
      }
    }
  });

  test("a wrong client secret: a tool error", async () => {
    const { client, stderr } = await connectStdio({ url: server.url, clientId: CLIENT_ID, secret: "wrong-secret-value" });
    try {
      const r = await client.callTool({
        name: "request_approval",
        arguments: { approver: APPROVER, binding_message: "Pay 6 EUR", authorization_details: payment("6.00"), wait_seconds: 0 },
      });
      assert.equal(r.isError, true);
      assert.match(textOf(r), /invalid_client/);
      assert.ok(!stderr().includes("wrong-secret-value"));
    } finally {
      await client.close();
    }
  });

  test("polls no faster than the interval, and 5 s slower after slow_down", async () => {
    // The first poll is answered slow_down; the following ones are the server's own.
    const proxy = await startProxy(server.url, undefined, (n) =>
      n === 1 ? { status: 400, body: { error: "slow_down", error_description: "poll at most every 6 seconds" } } : null,
    );
    const { client } = await connectStdio({ url: proxy.url, clientId: CLIENT_ID, secret: CLIENT_SECRET });
    try {
      const r = await client.callTool({
        name: "request_approval",
        arguments: { approver: APPROVER, binding_message: "Pay ACME Ltd 8.00 EUR (slow_down)", authorization_details: payment("8.00"), wait_seconds: 9 },
      });
      assert.equal(r.structuredContent?.status, "pending", textOf(r));
      const gaps = proxy.polls.slice(1).map((t, i) => t - proxy.polls[i]);
      assert.ok(proxy.polls.length >= 2 && proxy.polls.length <= 3, `polls: ${proxy.polls.length}`);
      // interval 1 s from the server, + 5 s after the slow_down
      assert.ok(gaps[0] >= 5_900, `gap after slow_down: ${gaps[0]} ms`);
      for (const g of gaps.slice(1)) assert.ok(g >= 5_900, `later gap: ${g} ms`);
    } finally {
      await client.close();
      await proxy.close();
    }
  });

  // Between the agent and the server: a token for other arguments, and a tampered token, are
  // refused by the MCP server's own checks (JWKS signature, authorization_details).
  for (const [name, alter, expect] of [
    [
      "a token approving other arguments (a real token of an earlier approval)",
      (body) => ({ ...body, access_token: approvedToken, authorization_details: payment("12.50") }),
      /authorization_details differ/,
    ],
    [
      "a tampered token (a claim changed, the signature kept)",
      (body) => {
        const [h, p, s] = body.access_token.split(".");
        const claims = JSON.parse(Buffer.from(p, "base64url"));
        claims.log_index += 1;
        return { ...body, access_token: `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}` };
      },
      /signature does not verify/,
    ],
  ]) {
    test(`${name}: not approved`, async () => {
      assert.ok(approvedToken, "the approve case ran first");
      const proxy = await startProxy(server.url, alter);
      const { client } = await connectStdio({ url: proxy.url, clientId: CLIENT_ID, secret: CLIENT_SECRET });
      try {
        const details = payment("500.00");
        const { result } = await requestAndDecide(client, {
          message: `Pay ACME Ltd 500.00 EUR (${name.slice(0, 20)})`,
          details,
          decision: "approve",
        });
        assert.equal(result.isError, true, textOf(result));
        assert.notEqual(result.structuredContent?.status, "approved");
        assert.match(textOf(result), expect);
      } finally {
        await client.close();
        await proxy.close();
      }
    });
  }
});
