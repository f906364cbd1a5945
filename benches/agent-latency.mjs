// Agent latency: the time from the approver's click (the moment decide/finish is sent) to the
// agent's tool body running, per CIBA delivery mode: poll (with the server's default interval,
// 5 s), ping, push, and through the MCP server (countersign-mcp over stdio, poll mode, the
// agent's tool running when `request_approval` answers `approved`). The agent side is @countersign/sdk's Vercel AI SDK wrapper (`withApproval`),
// so the time includes the token's fetch, the execution check (JWKS, signature, canonical JSON)
// and the wrapper; the approver side is a software passkey driving the approval API.
//
//   (cd integrations/typescript && npm ci && npx tsc -p .)   # once: builds the SDK's dist/
//   (cd integrations/mcp && npm ci); cargo build -p countersign-mcp   # once: the MCP row
//   node benches/agent-latency.mjs [--runs N] [--modes poll,ping,push,mcp]
//
// The server is the binary COUNTERSIGN_BIN (else $CARGO_TARGET_DIR/debug/countersign), started
// on 127.0.0.1 with a fresh data directory; the ping/push notification endpoint listens on
// 127.0.0.1 too. Before each click the approver "reads" for a random 0-5 s, so the click falls
// anywhere in the poll client's 5 s cycle, as a person's would.

import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

import { ApiApprover } from "../interop/lib/approver.mjs";
import { b64u } from "../interop/lib/passkey.mjs";
import { freePort, Server, serverBinary } from "../interop/lib/server.mjs";

const sdk = new URL("../integrations/typescript/dist/", import.meta.url);
let CountersignClient, withApproval;
try {
  ({ CountersignClient } = await import(new URL("index.js", sdk)));
  ({ withApproval } = await import(new URL("ai.js", sdk)));
} catch (e) {
  console.error(`the SDK is not built (${e.message}); run: (cd integrations/typescript && npm ci && npx tsc -p .)`);
  process.exit(2);
}

const { values } = parseArgs({
  options: { runs: { type: "string", default: "10" }, modes: { type: "string", default: "poll,ping,push,mcp" } },
});
const MODES = values.modes.split(",");
const RUNS = Number(values.runs);
const APPROVER = "appr-bench";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A server with the default poll interval (Server.start pins 1 s for the tests). */
async function startServer() {
  const dir = await mkdtemp(path.join(os.tmpdir(), "countersign-agent-latency-"));
  const dataDir = path.join(dir, "data");
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const args = ["serve", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`, "--public-url", publicUrl];
  const s = new Server(serverBinary(), args, dir, dataDir, port, publicUrl);
  await s.waitReady(30_000);
  return s;
}

async function agentFor(server, mode) {
  const id = `bench-${mode}`;
  const secret = `${id}-secret-0123456789abcdef`;
  const extra = ["--mode", mode];
  let listener;
  let handler = (_q, r) => (r.writeHead(503), r.end());
  if (mode !== "poll") {
    listener = http.createServer((q, r) => handler(q, r));
    await new Promise((r) => listener.listen(0, "127.0.0.1", r));
    extra.push("--notification-endpoint", `http://127.0.0.1:${listener.address().port}/notify`);
  }
  await server.addClient(id, secret, extra);
  const client = new CountersignClient({ url: server.url, clientId: id, clientSecret: secret, deliveryMode: mode });
  handler = client.notificationHandler();
  return { client, listener };
}

/** The action of run `i`: the tool's input, its binding message and authorization_details. */
function action(mode, i) {
  const input = { amount: `${i + 1}.00`, currency: "EUR", creditor: `ACME ${mode} ${i}` };
  const msg = `Pay ${input.amount} EUR to ${input.creditor}`;
  const details = (a) => [{ type: "payment_initiation", instructedAmount: { amount: a.amount, currency: a.currency }, creditorName: a.creditor }];
  return { input, msg, details };
}

/** The SDK agent: the wrapped tool's execute; resolves with the time its body ran. */
function sdkAgent(client) {
  return (mode, i) => {
    const { input, msg, details } = action(mode, i);
    let ranAt;
    const pay = withApproval(
      { description: "Pay", inputSchema: undefined, execute: async () => { ranAt = performance.now(); return "paid"; } },
      { client, approver: APPROVER, describe: (a) => ({ bindingMessage: msg, authorizationDetails: details(a) }) },
    );
    return pay.execute(input, { toolCallId: `c${i}`, messages: [] }).then((out) => {
      if (out !== "paid" || ranAt === undefined) throw new Error("the tool did not run");
      return ranAt;
    });
  };
}

/** The MCP agent: request_approval through countersign-mcp; its tool runs once that says approved. */
function mcpAgent(mcp) {
  return async (mode, i) => {
    const { input, msg, details } = action(mode, i);
    const r = await mcp.client.callTool(
      { name: "request_approval", arguments: { approver: APPROVER, binding_message: msg, authorization_details: details(input), wait_seconds: 60 } },
      undefined,
      { timeout: 90_000 },
    );
    if (r.isError || r.structuredContent?.status !== "approved") {
      throw new Error(`not approved: ${JSON.stringify(r.structuredContent ?? r.content)}`);
    }
    return performance.now();
  };
}

/** One approval: returns milliseconds from the click to the tool body, or throws. */
async function once(agent, approver, mode, i) {
  const { msg } = action(mode, i);
  const running = agent(mode, i);
  running.catch(() => {});
  const req = await approver.waitForRequest(msg, 15_000);
  await sleep(Math.random() * 5000);
  // decide/start, the passkey's signature, then the click: decide/finish sent.
  const id = encodeURIComponent(req.request_id);
  const start = await approver.post(`/v1/requests/${id}/decide/start`, { decision: "approve" });
  if (start.status !== 200) throw new Error(`decide/start ${start.status}`);
  const credential = await approver.passkey.assert(b64u.dec(start.body.publicKey.challenge));
  const clickedAt = performance.now();
  const finish = await approver.post(`/v1/requests/${id}/decide/finish`, { decision: "approve", credential });
  const loggedAt = performance.now();
  if (finish.status !== 201) throw new Error(`decide/finish ${finish.status}: ${JSON.stringify(finish.body)}`);
  const ranAt = await running;
  return { total: ranAt - clickedAt, logged: loggedAt - clickedAt };
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const fmt = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

const server = await startServer();
const listeners = [];
const closers = [];
try {
  const approver = await ApiApprover.create(server);
  await approver.enrol(await server.addApprover(APPROVER, "bench@example.com", "Bench Approver"));
  await approver.signIn();
  const rows = [];
  for (const mode of MODES) {
    let agent;
    if (mode === "mcp") {
      const { connectStdio } = await import("../integrations/mcp/test/lib.mjs");
      const secret = "bench-mcp-secret-0123456789abcdef";
      await server.addClient("bench-mcp", secret);
      const mcp = await connectStdio({ url: server.url, clientId: "bench-mcp", secret });
      closers.push(() => mcp.close());
      agent = mcpAgent(mcp);
    } else {
      const { client, listener } = await agentFor(server, mode);
      if (listener) listeners.push(listener);
      agent = sdkAgent(client);
    }
    const totals = [];
    const logged = [];
    for (let i = 0; i < RUNS; i++) {
      const r = await once(agent, approver, mode, i);
      totals.push(r.total);
      logged.push(r.logged);
      process.stderr.write(`${mode} run ${i + 1}/${RUNS}: ${fmt(r.total)}\n`);
    }
    totals.sort((a, b) => a - b);
    logged.sort((a, b) => a - b);
    rows.push([mode, RUNS, fmt(pct(totals, 50)), fmt(pct(totals, 95)), fmt(totals.at(-1)), fmt(pct(logged, 50))]);
  }
  console.log(`agent latency, click -> tool body (${RUNS} runs per mode, server ${serverBinary()})\n`);
  console.log("| delivery | runs | p50 | p95 | max | click -> decision logged (p50) |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
} finally {
  for (const c of closers) await c().catch(() => {});
  for (const l of listeners) {
    l.closeAllConnections();
    l.close();
  }
  await server.stop();
}
