// Vercel AI SDK: a payment tool that runs only once Alice approved this exact payment.
// Run by test/examples.test.mjs with the AI SDK's mock model; in an agent, pass a real model
// (for example openai("gpt-4o") from @ai-sdk/openai).

import { generateText, stepCountIs, tool } from "ai";
import { z } from "zod";
import { withApproval } from "@countersign/sdk/ai";

export function payTool({ client, approver, pay }) {
  return withApproval(
    tool({
      description: "Pay an invoice",
      inputSchema: z.object({ amount: z.string(), currency: z.string(), creditor: z.string() }),
      execute: async (input) => pay(input),
    }),
    {
      client,
      approver,
      describe: ({ amount, currency, creditor }) => ({
        bindingMessage: `Pay ${amount} ${currency} to ${creditor}`,
        authorizationDetails: [
          { type: "payment_initiation", instructedAmount: { amount, currency }, creditorName: creditor },
        ],
      }),
    },
  );
}

export async function runAgent({ model, client, approver, pay, prompt = "Pay the ACME invoice" }) {
  return generateText({
    model,
    tools: { pay: payTool({ client, approver, pay }) },
    stopWhen: stepCountIs(1),
    prompt,
  });
}
