// An agent that pays an invoice only after a person approved exactly that payment, through
// countersign-mcp and the official MCP TypeScript client (stdio: the client starts the server
// as a child process, as a desktop agent does).
//
//   COUNTERSIGN_URL=https://approve.example.com COUNTERSIGN_CLIENT_ID=my-agent \
//   COUNTERSIGN_CLIENT_SECRET=... node examples/pay-with-approval.mjs apv_alice 42.00 "ACME Ltd"
//
// Exits 0 after paying, 3 when the payment was not approved (denied, expired, still pending,
// or any error: fails closed), 2 on a usage error. COUNTERSIGN_MCP_BIN names the binary
// (default: countersign-mcp on PATH).

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [approver, amount, creditor] = process.argv.slice(2);
if (!approver || !amount || !creditor) {
  console.error("usage: pay-with-approval.mjs APPROVER AMOUNT CREDITOR");
  process.exit(2);
}

// The exact action: what the approver reads and signs, and what the token must carry.
const action = [
  { type: "payment_initiation", instructedAmount: { currency: "EUR", amount }, creditorName: creditor },
];

function pay() {
  // The real side effect would go here; it runs only on an explicit approval.
  console.log(`paid ${amount} EUR to ${creditor}`);
}

// The secret and the URL reach the server through the environment, never on the command line.
const transport = new StdioClientTransport({
  command: process.env.COUNTERSIGN_MCP_BIN || "countersign-mcp",
  env: process.env,
  stderr: "inherit",
});
const client = new Client({ name: "pay-with-approval", version: "1.0.0" });
let status = "error";
try {
  await client.connect(transport);
  const result = await client.callTool(
    {
      name: "request_approval",
      arguments: {
        approver,
        binding_message: `Pay ${amount} EUR to ${creditor}`,
        authorization_details: action,
        wait_seconds: 120,
      },
    },
    undefined,
    { timeout: 150_000 },
  );
  // Fail closed: only a structured "approved" without a tool error lets the payment run.
  status = !result.isError && result.structuredContent?.status === "approved" ? "approved" : (result.structuredContent?.status ?? "error");
  if (status === "approved") {
    console.log(`approved: log index ${result.structuredContent.log_index}, statement ${result.structuredContent.statement_sha256}`);
    pay();
  } else {
    console.log(`not approved (${status}): nothing paid`);
  }
} catch (e) {
  console.log(`not approved (${e.message}): nothing paid`);
} finally {
  await client.close().catch(() => {});
}
process.exit(status === "approved" ? 0 : 3);
