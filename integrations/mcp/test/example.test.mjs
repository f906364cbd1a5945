// examples/pay-with-approval.mjs, run as a user would run it (a child node process, the
// configuration in the environment) against a live server: it pays after an approval and pays
// nothing after a denial.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

import { ApiApprover } from "../../../interop/lib/approver.mjs";
import { Server } from "../../../interop/lib/server.mjs";

import { mcpBinary } from "./lib.mjs";

const EXAMPLE = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "examples", "pay-with-approval.mjs");
const CLIENT_ID = "example-agent";
const SECRET = "example-agent-secret-0123456789";
const APPROVER = "apv_example_bob";

let server;
let approver;

before(async () => {
  server = await Server.start();
  await server.addClient(CLIENT_ID, SECRET);
  approver = await ApiApprover.create(server);
  await approver.enrol(await server.addApprover(APPROVER, "bob@example.com", "Bob Example"));
  await approver.signIn();
});

after(async () => {
  await server?.stop();
});

/** Runs the example for `amount`, the approver deciding `decision`; returns { code, stdout }. */
async function run(amount, decision) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("COUNTERSIGN_")) env[k] = v;
  Object.assign(env, {
    COUNTERSIGN_URL: server.url,
    COUNTERSIGN_CLIENT_ID: CLIENT_ID,
    COUNTERSIGN_CLIENT_SECRET: SECRET,
    COUNTERSIGN_MCP_BIN: mcpBinary(),
  });
  const child = spawn(process.execPath, [EXAMPLE, APPROVER, amount, "ACME Ltd"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  const req = await approver.waitForRequest(`Pay ${amount} EUR to ACME Ltd`, 20_000);
  assert.deepEqual(req.authorization_details, [
    { type: "payment_initiation", instructedAmount: { currency: "EUR", amount }, creditorName: "ACME Ltd" },
  ]);
  const { finish } = await approver.decide(req.request_id, decision);
  assert.equal(finish.status, 201);
  const code = await exited;
  assert.ok(!stdout.includes(SECRET) && !stderr.includes(SECRET), "the secret is never printed");
  return { code, stdout };
}

test("the example pays after an approval", { timeout: 60_000 }, async () => {
  const { code, stdout } = await run("42.00", "approve");
  assert.equal(code, 0, stdout);
  assert.match(stdout, /^approved: log index \d+, statement [0-9a-f]{64}$/m);
  assert.match(stdout, /^paid 42\.00 EUR to ACME Ltd$/m);
});

test("the example pays nothing after a denial", { timeout: 60_000 }, async () => {
  const { code, stdout } = await run("43.00", "deny");
  assert.equal(code, 3, stdout);
  assert.match(stdout, /not approved \(denied\): nothing paid/);
  assert.doesNotMatch(stdout, /^paid/m);
});
