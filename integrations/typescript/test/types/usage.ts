// Compiled (not run) by test.sh with `tsc --noEmit`: the public types infer what a TypeScript
// user expects, and misuse is a compile error.

import { tool as aiTool } from "ai";
import { tool as lcTool } from "@langchain/core/tools";
import { z } from "zod";

import { CountersignClient, ExecutionMismatch, type TokenSet } from "@countersign/sdk";
import { withApproval } from "@countersign/sdk/ai";
import { withApproval as withApprovalLc } from "@countersign/sdk/langchain";
import { resolveApproval, withApprovalInterrupt, type ApprovalDecision } from "@countersign/sdk/langgraph";

const client = new CountersignClient({ url: "https://cs.example", clientId: "agent", clientSecret: "s" });

const pay = withApproval(
  aiTool({
    description: "Pay",
    inputSchema: z.object({ amount: z.string(), creditor: z.string() }),
    execute: async ({ amount }) => ({ paid: amount }),
  }),
  {
    client,
    approver: "alice@example.com",
    // `a` is the tool's input type.
    describe: (a) => ({ bindingMessage: `Pay ${a.amount} to ${a.creditor}`, authorizationDetails: [{ type: "payment_initiation", ...a }] }),
  },
);
// The wrapped tool keeps its input and output types.
export const out: Promise<{ paid: string }> | undefined = pay.execute?.({ amount: "1", creditor: "x" }, { toolCallId: "c", messages: [] }) as Promise<{ paid: string }>;

withApproval(
  aiTool({ description: "Pay", inputSchema: z.object({ amount: z.string() }), execute: async () => 1 }),
  // @ts-expect-error: describe must return authorizationDetails
  { client, approver: "a", describe: () => ({ bindingMessage: "m" }) },
);

const raw = lcTool(async ({ amount }: { amount: string }) => amount, { name: "pay", description: "Pay", schema: z.object({ amount: z.string() }) });
export const lc = withApprovalLc<{ amount: string }>(raw, { client, approver: "a", describe: (a) => ({ bindingMessage: a.amount, authorizationDetails: [] }) });
export const lg = withApprovalInterrupt<{ amount: string }>(raw, { client, approver: "a", describe: (a) => ({ bindingMessage: a.amount, authorizationDetails: [] }) });

export async function flow(): Promise<ApprovalDecision> {
  const t: TokenSet = await client.approve({ approver: "a", bindingMessage: "m", authorizationDetails: [{ type: "x" }] });
  try {
    await client.checkExecution(t.accessToken, [{ type: "x" }]);
  } catch (e) {
    if (e instanceof ExecutionMismatch) console.log(e.approved, e.attempted);
  }
  return resolveApproval(client, { type: "countersign.approval", tool: "pay", approver: "a", binding_message: "m", authorization_details: [] });
}
